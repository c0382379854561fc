"""pyspark in an environment of its own, for the Spark tests.

pyspark's wheel is about 480 MB (Spark's jars inside) and the platform never imports it, so it
stays out of the project's environment: a virtual environment under
``$MESH_TOOLS_CACHE/pyspark-<version>`` (default ``~/.cache/datamesh``) holds it, created with uv
from PyPI the first time a test needs it (39 s cold here) and reused afterwards by every clone and
test run on the machine. Concurrent test workers wait for one another (a file lock); a half-made
environment is never used (built in a temporary folder, renamed when complete).

``python tests/spark_env.py`` creates it ahead of time and prints its Python.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mesh_assets.settings import tools_cache
from mesh_assets.spark import PYSPARK_VERSION

INSTALL_TIMEOUT_S = 900


class PysparkUnavailable(RuntimeError):
    """The environment could not be made; the message says why."""


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    return [sys.executable, "-m", "uv"]


def pyspark_python() -> Path:
    """The Python of the pyspark environment, made on first use."""
    home = tools_cache() / f"pyspark-{PYSPARK_VERSION}"
    python = home / "bin" / "python"
    if python.exists():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists():
            return python
        build = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
        try:
            for command in (
                [*_uv(), "venv", "--quiet", "--python", sys.executable, str(build)],
                [
                    *_uv(),
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(build / "bin" / "python"),
                    f"pyspark=={PYSPARK_VERSION}",
                ],
            ):
                done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
                if done.returncode != 0:
                    raise PysparkUnavailable(f"`{' '.join(command)}` failed: {done.stderr.strip()[-2000:]}")
            build.rename(home)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return python


if __name__ == "__main__":
    print(pyspark_python())
