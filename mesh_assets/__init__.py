"""datamesh platform: contract-driven data products on Iceberg, orchestrated by Dagster."""

from mesh_assets.domain import build_domain, load_domain

__all__ = ["build_domain", "load_domain"]
