"""Lineage and metadata export to OpenMetadata (plain HTTP + JSON, no openmetadata-ingestion).

``models``   typed request payloads of the 2.x API (validated in the tests against the official
             SDK's models, and in their 1.x shape against the 1.4 JSON Schemas)
``api``      the API versions (2.x, 1.x up to 1.4): what differs, and which the server speaks
``client``   HTTP with bounded retries, bearer JWT from OPENMETADATA_JWT_TOKEN(_FILE)
``lineage``  column lineage of dbt models from the manifest's compiled SQL (sqlglot)
``export``   contracts + domains + Dagster asset graphs + dbt artifacts + Dagster instance ->
             ordered create-or-update calls
``sensor``   a Dagster sensor per domain (stopped and a no-op without OPENMETADATA_HOST)
``dbt_workflow``  the config of OpenMetadata's own dbt workflow for a domain's artifacts
``cli``      ``mesh openmetadata export`` and ``mesh openmetadata dbt-config``

Only ``sensor`` is imported by code-location loading; it imports the rest lazily.
"""
