"""pyspark in an environment of its own, for the Spark tests.

pyspark's wheel is about 480 MB (Spark's jars inside) and the platform never imports it, so it
stays out of the project's environment: a virtual environment under
``$MESH_TOOLS_CACHE/pyspark-<version>`` (default ``~/.cache/datamesh``) holds it, created with uv
from PyPI the first time a test needs it (39 s cold here) and reused afterwards by every clone and
test run on the machine (``mesh_assets.tools.isolated_env``: concurrent test workers wait for one
another, a half-made environment is never used).

``python tests/spark_env.py`` creates it ahead of time and prints its Python.
"""

from __future__ import annotations

from pathlib import Path

from mesh_assets import tools
from mesh_assets.spark import PYSPARK_VERSION

INSTALL_TIMEOUT_S = 900


class PysparkUnavailable(RuntimeError):
    """The environment could not be made; the message says why."""


def pyspark_python() -> Path:
    """The Python of the pyspark environment, made on first use."""
    try:
        return tools.isolated_env(
            f"pyspark-{PYSPARK_VERSION}", [f"pyspark=={PYSPARK_VERSION}"], timeout_s=INSTALL_TIMEOUT_S
        )
    except tools.ToolError as exc:
        raise PysparkUnavailable(f"the environment of pyspark {PYSPARK_VERSION}: {exc}") from None


if __name__ == "__main__":
    print(pyspark_python())
