"""Ingestion: landing files -> contract-typed Arrow batches -> one commit on the run's audit
branch. ``landing`` (local folder or S3), ``readers`` (strict typing by the contract),
``quarantine`` (rows that break the contract, when it allows), ``assets`` (the Dagster asset),
``sensors`` (landing-zone sensors)."""
