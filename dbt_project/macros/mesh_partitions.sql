{#-
  The partition window of a run (ISO timestamps, end exclusive; a single partition or a whole
  backfill range): the platform sets MESH_PARTITION_START / MESH_PARTITION_END in dbt's
  environment (env vars, not --vars: dbt re-parses the whole project when vars change, and only
  re-renders what reads an env var that changed). A hand-run dbt may pass the vars
  mesh_partition_start / mesh_partition_end instead. Without either a model builds every
  partition.
-#}

{% macro mesh_partition_filter(column, cast_to='timestamp') -%}
    {%- set start = var('mesh_partition_start', env_var('MESH_PARTITION_START', '')) -%}
    {%- set end = var('mesh_partition_end', env_var('MESH_PARTITION_END', '')) -%}
    {%- if start and end -%}
        {{ column }} >= {{ mesh_literal(start, cast_to) }} and {{ column }} < {{ mesh_literal(end, cast_to) }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- A typed literal from an ISO timestamp: the one place where the dialects differ. -#}
{% macro mesh_literal(iso, cast_to) -%}
    {{ return(adapter.dispatch('mesh_literal')(iso, cast_to)) }}
{%- endmacro %}

{% macro default__mesh_literal(iso, cast_to) -%}
    {%- if cast_to == 'date' -%}
        date '{{ iso[:10] }}'
    {%- else -%}
        cast('{{ iso }}' as timestamp with time zone)
    {%- endif -%}
{%- endmacro %}

{% macro trino__mesh_literal(iso, cast_to) -%}
    {%- if cast_to == 'date' -%}
        date '{{ iso[:10] }}'
    {%- else -%}
        from_iso8601_timestamp('{{ iso }}')
    {%- endif -%}
{%- endmacro %}
