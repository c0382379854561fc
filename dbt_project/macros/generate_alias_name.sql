{#-
  Write-audit-publish on Trino: a data product's model is built into `<model>__staging`; the
  platform conforms it to the contract, commits it to the product table on the run's audit
  branch and publishes it when the product's blocking checks pass (mesh_assets.dbt). On DuckDB
  the platform's plugin does the same from the Parquet file dbt-duckdb writes.
-#}
{% macro generate_alias_name(custom_alias_name=none, node=none) -%}
    {%- set name = custom_alias_name or node.name -%}
    {%- if target.type == 'trino' and node.resource_type == 'model'
          and (node.config.meta or {}).get('mesh_product') -%}
        {{ name }}__staging
    {%- else -%}
        {{ name }}
    {%- endif -%}
{%- endmacro %}
