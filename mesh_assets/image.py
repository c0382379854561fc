"""The platform's container image, built with podman (``mesh image build``, ``make image``).

The image is ``Containerfile`` at the repository's root. Its base is a Python 3.11 image on
Debian bookworm: ``docker.io/library/python:3.11-slim-bookworm`` by default (the
Containerfile's ``PYTHON_IMAGE``). Where no registry is reachable (this project's CI), the
base is made here from Debian's own packages: ``mmdebstrap`` of bookworm with python3, pip and
the CA certificates, imported with ``podman import`` under a tag derived from its recipe, and
cached (``~/.cache/datamesh/image``, and podman's storage) so it is made once per machine.
It offers what the official image offers the build: ``python``, ``pip`` and no
EXTERNALLY-MANAGED marker. The build's RUN steps see the host's CA bundle (a bind mount, not a
layer): on the Debian base, pip and uv (``SSL_CERT_FILE``) trust it, so they reach PyPI from a
machine behind a TLS-inspecting proxy; the image keeps Debian's bundle. (On the public python
base, pip and uv use their own CA lists.)

podman runs with the settings this machine kind needs (``containers.conf`` written next to the
cache, passed as ``CONTAINERS_CONF``): the ``runc`` runtime (crun refuses cgroups in hybrid
mode) and ulimits within the host's hard limits; containers use the host's network.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mesh_assets.settings import PROJECT_DIR
from mesh_assets.tools import cache_dir

IMAGE_REPOSITORY = "localhost/datamesh"
BASE_REPOSITORY = "localhost/datamesh-base"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the build and the runtime stages use of python:3.11-slim: python (3.11 in bookworm),
# pip and venv, CA certificates. No compiler: every dependency in uv.lock is a wheel.
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
BASE_HOOKS = (
    # pip may install into the system Python, as in the official image
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
    # documentation and translations: not needed in a server image
    'rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*',
)
BASE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    # uv (in the build) trusts the system's CA bundle, as pip does, instead of its own roots
    "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    'CMD ["python3"]',
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINERS_CONF = """\
# Written by mesh_assets/image.py: podman on this machine kind (see its docstring).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


class ImageError(RuntimeError):
    """The image could not be built (the message says which step and what to do)."""


@dataclass(frozen=True)
class Built:
    """An image built: its reference, size in bytes, layer count and build time."""

    reference: str
    size: int
    layers: int
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.reference}: {self.size / 2**20:.0f} MiB, {self.layers} layers, "
            f"built in {self.seconds:.0f} s"
        )


def image_cache() -> Path:
    path = cache_dir() / "image"
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def containers_conf() -> Path:
    """The machine kind's containers.conf, written once per process."""
    conf = image_cache() / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return conf


def podman_env() -> dict[str, str]:
    """The environment of every podman call: the machine kind's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf())}


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None):
    """Run ``podman ARGS`` with the machine's settings; an ImageError with its output if it fails."""
    if shutil.which("podman") is None:
        raise ImageError("podman is not installed: `make image` installs it (apt-get install podman runc)")
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=capture, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        output = (result.stderr or "") + (result.stdout or "") if capture else ""
        raise ImageError(f"podman {' '.join(args[:2])} failed (exit {result.returncode}): {output[-3000:]}")
    return result


def project_version() -> str:
    return tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["version"]


def platform_reference(tag: str | None = None) -> str:
    return f"{IMAGE_REPOSITORY}:{tag or project_version()}"


def base_reference() -> str:
    """The base's tag: the suite and a digest of its recipe (a changed recipe, a new base)."""
    recipe = json.dumps([DEBIAN_SUITE, BASE_PACKAGES, BASE_HOOKS, BASE_CONFIG])
    return f"{BASE_REPOSITORY}:{DEBIAN_SUITE}-py3.11-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def build_base(say=print) -> str:
    """The Debian base image (made and imported when podman does not hold it yet)."""
    reference = base_reference()
    if image_exists(reference):
        say(f"base {reference}: cached")
        return reference
    tarball = image_cache() / f"{reference.rsplit(':', 1)[1]}.tar"
    if not tarball.exists():
        if shutil.which("mmdebstrap") is None:
            raise ImageError(
                "mmdebstrap is not installed: `make image` installs it (apt-get install mmdebstrap)"
            )
        say(f"base: mmdebstrap {DEBIAN_SUITE} with {', '.join(BASE_PACKAGES)} (a minute or two, once)")
        partial = tarball.with_suffix(".partial.tar")
        command = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            "--aptopt=Apt::Install-Recommends false",
            *(f"--customize-hook={hook}" for hook in BASE_HOOKS),
            DEBIAN_SUITE,
            str(partial),
            DEBIAN_MIRROR,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ImageError(f"mmdebstrap failed (exit {result.returncode}): {result.stderr[-3000:]}")
        partial.replace(tarball)
    changes = [arg for line in BASE_CONFIG for arg in ("--change", line)]
    podman("import", *changes, str(tarball), reference)
    say(f"base {reference}: imported from {tarball}")
    return reference


def build(
    *, tag: str | None = None, base: str | None = None, context: Path | None = None, say=print
) -> Built:
    """Build the platform image from ``Containerfile`` (on the Debian base unless ``base`` names
    another one, e.g. the official python image on a connected machine)."""
    base = base or build_base(say)
    reference = platform_reference(tag)
    context = context or PROJECT_DIR
    args = ["build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}"]
    if HOST_CA_BUNDLE.exists():
        args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    args += ["--tag", reference, "--file", str(context / "Containerfile"), str(context)]
    say(f"podman {' '.join(args)}")
    started = time.monotonic()
    result = podman(*args, capture=False, check=False)
    if result.returncode != 0:
        raise ImageError(
            f"podman build of {reference} failed (exit {result.returncode}): its output is above"
        )
    return describe(reference, time.monotonic() - started)


def describe(reference: str, seconds: float = 0.0) -> Built:
    info = json.loads(podman("image", "inspect", reference).stdout)[0]
    return Built(reference, int(info["Size"]), len(info["RootFS"]["Layers"]), seconds)


def layers(reference: str) -> list[str]:
    return json.loads(podman("image", "inspect", reference).stdout)[0]["RootFS"]["Layers"]
