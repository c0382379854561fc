"""Lineage and metadata export to OpenMetadata (plain HTTP + JSON, no openmetadata-ingestion).

``models``   typed request payloads (validated against the official JSON Schemas in the tests)
``client``   HTTP with bounded retries, bearer JWT from OPENMETADATA_JWT_TOKEN(_FILE)
``lineage``  column lineage of dbt models from the manifest's compiled SQL (sqlglot)
``export``   contracts + domains + Dagster asset graphs + dbt artifacts + Dagster instance ->
             ordered create-or-update calls
``sensor``   a Dagster sensor per domain (stopped and a no-op without OPENMETADATA_HOST)
``cli``      ``mesh openmetadata export``

Only ``sensor`` is imported by code-location loading; it imports the rest lazily.
"""
