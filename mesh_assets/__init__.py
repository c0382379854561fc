"""datamesh platform: contract-driven data products on Iceberg, orchestrated by Dagster.

The public entry points are imported on first use, so that light users (the dbt plugin, the
``mesh`` command, a notebook calling :func:`read`) do not pay for Dagster's dbt integration.
"""

import importlib

_EXPORTS = {
    "build_domain": "mesh_assets.definitions",
    "load_domain": "mesh_assets.definitions",
    "read": "mesh_assets.read_api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mesh_assets' has no attribute {name!r}")
