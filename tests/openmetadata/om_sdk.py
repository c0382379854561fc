"""The official OpenMetadata SDK (``openmetadata-ingestion``) in an environment of its own.

The SDK pins old libraries and is heavy, so it never enters the project's environment: a
virtual environment under ``$MESH_TOOLS_CACHE/om-sdk-<version>`` (default
``~/.cache/datamesh``) holds it, created with uv from PyPI the first time a test needs it and
reused afterwards by every clone and test run on the machine (``mesh_assets.tools.isolated_env``:
concurrent test workers wait for one another, a half-made environment is never used).
``dbt-core<1.12`` goes into the same install: the SDK would pull dbt-core 1.12, whose parser
wheel downloads from outside the registries.

``python tests/openmetadata/om_sdk.py`` creates it ahead of time and prints its Python.
"""

from __future__ import annotations

import time
from pathlib import Path

from mesh_assets import tools
from mesh_assets.openmetadata.models import SDK_PACKAGE, SDK_VERSION

INSTALL_TIMEOUT_S = 900  # a cold install took 17 s here (371 MB); a slow mirror gets room
REQUIREMENTS = (f"{SDK_PACKAGE}=={SDK_VERSION}", "dbt-core<1.12")
SDK_ENV = f"om-sdk-{SDK_VERSION}"  # its folder in the tools cache


class SdkUnavailable(RuntimeError):
    """The SDK's environment could not be made; the message says why and what to do."""


def sdk_home() -> Path:
    return tools.cache_dir() / SDK_ENV


def sdk_python() -> tuple[Path, float | None]:
    """The Python of the SDK's environment and how long making it took (None: it existed)."""
    python = sdk_home() / "bin" / "python"
    if python.exists():
        return python, None
    started = time.monotonic()
    try:
        tools.isolated_env(SDK_ENV, REQUIREMENTS, timeout_s=INSTALL_TIMEOUT_S)
    except tools.ToolError as exc:
        raise SdkUnavailable(f"the environment of {' '.join(REQUIREMENTS)}: {exc}") from None
    return python, time.monotonic() - started


if __name__ == "__main__":
    path, took = sdk_python()
    print(path if took is None else f"{path} (made in {took:.0f} s)")
