{#-
  Dagster partitions reach dbt as vars: mesh_partition_start / mesh_partition_end (ISO
  timestamps, end exclusive), set by the platform for a partitioned run (a single partition or
  a whole backfill range). Without them a model builds every partition.
-#}

{% macro mesh_partition_filter(column, cast_to='timestamp') -%}
    {%- set start = var('mesh_partition_start', none) -%}
    {%- set end = var('mesh_partition_end', none) -%}
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
