"""dbt: one project with a folder per domain, on dagster-dbt. ``domain`` (a code location's
entry point: it imports dagster-dbt only for domains with models), ``project`` (contract-derived
sources, tests and model properties; the prepared manifest), ``runner`` (the dagster-dbt
resource and what the platform adds around each dbt run), ``assets`` (``@dbt_assets`` keyed
``[domain, model]``, dbt tests as checks), ``outputs`` (model results to Iceberg, on the run's
audit branch), ``artifacts`` (kept for OpenMetadata), ``plugin`` (the dbt-duckdb plugin)."""
