"""The official OpenMetadata SDK (``openmetadata-ingestion``) in an environment of its own.

The SDK pins old libraries and is heavy, so it never enters the project's environment: a
virtual environment under ``$MESH_TOOLS_CACHE/om-sdk-<version>`` (default
``~/.cache/datamesh``) holds it, created with uv from PyPI the first time a test needs it and
reused afterwards by every clone and test run on the machine. Concurrent test workers wait
for one another (a file lock); a half-made environment is never used (it is built in a
temporary folder and renamed when complete). ``dbt-core<1.12`` goes into the same install: the
SDK would pull dbt-core 1.12, whose parser wheel downloads from outside the registries.

``python tests/openmetadata/om_sdk.py`` creates it ahead of time and prints its Python.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mesh_assets.openmetadata.models import SDK_PACKAGE, SDK_VERSION
from mesh_assets.settings import tools_cache

INSTALL_TIMEOUT_S = 900  # a cold install took 17 s here (371 MB); a slow mirror gets room
REQUIREMENTS = (f"{SDK_PACKAGE}=={SDK_VERSION}", "dbt-core<1.12")


class SdkUnavailable(RuntimeError):
    """The SDK's environment could not be made; the message says why and what to do."""


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    python = shutil.which("python3")
    if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
        return [python, "-m", "uv"]
    raise SdkUnavailable("uv is not installed: run `make install` (it installs uv) or `pip install uv`")


def sdk_home() -> Path:
    return tools_cache() / f"om-sdk-{SDK_VERSION}"


def sdk_python() -> tuple[Path, float | None]:
    """The Python of the SDK's environment and how long making it took (None: it existed)."""
    home = sdk_home()
    python = home / "bin" / "python"
    if python.exists():
        return python, None
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists():  # made by another worker meanwhile
            return python, None
        started = time.monotonic()
        build = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
        try:
            uv = _uv()
            for command in (
                [*uv, "venv", "--quiet", "--python", sys.executable, str(build)],
                [*uv, "pip", "install", "--quiet", "--python", str(build / "bin" / "python"), *REQUIREMENTS],
            ):
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise SdkUnavailable(
                        f"installing {' '.join(REQUIREMENTS)} took more than {INSTALL_TIMEOUT_S} s "
                        "(is PyPI reachable?)"
                    ) from None
                if done.returncode != 0:
                    raise SdkUnavailable(
                        f"`{' '.join(command)}` failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
                    )
            # only bin/python is run: the venv works from its final place (its scripts would not)
            build.rename(home)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        return python, time.monotonic() - started


if __name__ == "__main__":
    path, took = sdk_python()
    print(path if took is None else f"{path} (made in {took:.0f} s)")
