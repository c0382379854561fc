"""dbt on the mesh through dagster-dbt: see mesh_assets.dbt.domain (a code location's entry point)."""
