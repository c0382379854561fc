{#- A model's schema is its domain: the first folder under models/ (models/<domain>/...). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if node.resource_type in ('model', 'seed', 'snapshot') and node.fqn | length > 2 -%}
        {{ node.fqn[1] }}
    {%- else -%}
        {{ custom_schema_name or target.schema }}
    {%- endif -%}
{%- endmacro %}
