"""dbt: one project with a folder per domain. ``project`` (contract-derived sources, tests and
model properties; the prepared manifest), ``runner`` (the dbt process of a run), ``assets`` (dbt
models as assets ``[domain, model]``, dbt tests as checks), ``outputs`` (model results to
Iceberg, on the run's audit branch), ``artifacts`` (kept for OpenMetadata), ``plugin`` (the
dbt-duckdb plugin)."""
