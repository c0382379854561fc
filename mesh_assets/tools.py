"""Outside tools the platform installs for itself, cached outside the repository.

Go programs (helm, kubeconform, OPA, the S3 server) are built once with ``go install``, Maven
Central artifacts (Trino, the OpenMetadata spec) are downloaded once and Python programs whose
dependencies would clash with the platform's (Superset, the OpenMetadata SDK, pyspark) get a
virtual environment of their own, made once with uv (:func:`isolated_env`); all land under
``$MESH_TOOLS_CACHE`` (default ``~/.cache/datamesh``) and are reused by every clone, test run
and CI job on the machine. Nothing here is ever written inside the repository.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh_assets.settings import maven_repo, tools_cache

MAVEN_CENTRAL = maven_repo()


class ToolError(RuntimeError):
    """A tool could not be installed or fetched; the message says what to do."""


def cache_dir() -> Path:
    path = tools_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class GoTool:
    name: str  # the binary's name
    package: str  # what `go install` builds
    version: str


# Versions pinned here are the ones the tests and the stack run with.
GO_TOOLS = {
    "helm": GoTool("helm", "helm.sh/helm/v3/cmd/helm", "v3.19.0"),
    "kubeconform": GoTool("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.7.0"),
    "opa": GoTool("opa", "github.com/open-policy-agent/opa", "v1.22.2"),
}


def go_tool(name: str, tool: GoTool | None = None) -> Path:
    """The path of a Go tool's binary, built with ``go install`` on first use."""
    tool = tool or GO_TOOLS[name]
    bin_dir = cache_dir() / "go" / f"{tool.name}-{tool.version}"
    binary = bin_dir / tool.name
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise ToolError(
            f"building {tool.name} needs the Go toolchain (`go` on PATH); install Go "
            f"or put a {tool.name} binary at {binary}"
        )
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(bin_dir), "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "install", f"{tool.package}@{tool.version}"], env=env, capture_output=True, text=True
    )
    if result.returncode != 0 or not binary.exists():
        raise ToolError(
            f"`go install {tool.package}@{tool.version}` failed "
            f"(exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return binary


def maven_url(
    group: str, artifact: str, version: str, ext: str = "jar", classifier: str | None = None
) -> str:
    name = f"{artifact}-{version}" + (f"-{classifier}" if classifier else "") + f".{ext}"
    return f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{name}"


def download(url: str, sha1: bool = True) -> Path:
    """A file from a registry, downloaded once into the cache (atomically, checksum verified
    against the registry's ``.sha1`` when it publishes one)."""
    target = cache_dir() / "downloads" / url.rsplit("/", 1)[1]
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    digest = hashlib.sha1()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=120) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if sha1:
            try:
                with urllib.request.urlopen(url + ".sha1", timeout=30) as response:
                    expected = response.read().decode().split()[0].strip()
            except urllib.error.HTTPError:
                expected = None
            if expected and expected != digest.hexdigest():
                raise ToolError(
                    f"checksum mismatch for {url}: registry says {expected}, "
                    f"downloaded {digest.hexdigest()}; retry the command"
                )
        os.replace(tmp, target)
    except urllib.error.URLError as exc:
        raise ToolError(
            f"download of {url} failed: {exc.reason}; check the network access to "
            f"the package registry (MESH_MAVEN_REPO overrides Maven Central)"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def maven_artifact(
    group: str, artifact: str, version: str, ext: str = "jar", classifier: str | None = None
) -> Path:
    """An artifact from Maven Central, downloaded once into the cache."""
    return download(maven_url(group, artifact, version, ext, classifier))


def _uv() -> list[str]:
    """The command that runs uv: on PATH, else as a module of this Python or of ``python3``."""
    found = shutil.which("uv")
    if found:
        return [found]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    raise ToolError("uv is not installed: run `make install` (it installs uv) or `python3 -m pip install uv`")


def isolated_env(name: str, requirements: Sequence[str] | Path, timeout_s: float = 900) -> Path:
    """The Python of a virtual environment of its own, ``cache_dir() / name``, holding
    ``requirements`` (requirement specifiers, or a requirements file), made with uv on first use.

    A half-made environment is never used: it is built in a temporary folder beside its place and
    renamed into place when complete (relocatable, so its scripts run from there), and an
    environment whose Python exists is taken as made. Concurrent makers (test workers, two
    commands) wait for one another on a file lock beside it. ``timeout_s`` bounds each uv command.
    """
    home = cache_dir() / name
    python = home / "bin" / "python"
    if python.exists():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists():  # made by another process meanwhile
            return python
        specs = ["--requirement", str(requirements)] if isinstance(requirements, Path) else list(requirements)
        build = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
        try:
            uv = _uv()
            for command in (
                [*uv, "venv", "--quiet", "--relocatable", "--python", sys.executable, str(build)],
                [*uv, "pip", "install", "--quiet", "--python", str(build / "bin" / "python"), *specs],
            ):
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    raise ToolError(
                        f"`{' '.join(command)}` took more than {timeout_s:.0f} s (is the package index "
                        "reachable?)"
                    ) from None
                if done.returncode != 0:
                    raise ToolError(
                        f"`{' '.join(command)}` failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
                    )
            shutil.rmtree(home, ignore_errors=True)  # what an interrupted in-place install left
            build.rename(home)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return python
