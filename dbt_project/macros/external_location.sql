{#- Where dbt-duckdb's external materialization writes a model before the mesh's plugin commits
    it to Iceberg: dbt-duckdb's own macro with the folder under $MESH_HOME read when the model
    runs, not from the profile. A profile value that depends on MESH_HOME would make dbt parse
    the whole project again for every MESH_HOME (the profile is part of the parse's state), so
    the parse `mesh dbt prepare` made could not serve a new one. -#}
{%- macro external_location(relation, config) -%}
  {%- set root = env_var('MESH_HOME') ~ '/dbt/external' -%}
  {%- if config.get('options', {}).get('partition_by') is none -%}
    {{- root }}/{{ relation.identifier }}.{{ config.get('format', 'parquet') }}
  {%- else -%}
    {{- root }}/{{ relation.identifier }}
  {%- endif -%}
{%- endmacro -%}
