{# The build state (staging and intermediate, `+database: ptpulse_state` in dbt_project.yml) lives in its own DuckDB
   file, attached as `ptpulse_state` by the build's profile (ptpulse/build/incremental.py says why). On any other
   adapter (Spark: one catalog) every model stays in the target's database, exactly dbt's default. #}
{% macro generate_database_name(custom_database_name=none, node=none) -%}
    {%- if target.type == 'duckdb' -%}
        {{ default__generate_database_name(custom_database_name, node) }}
    {%- else -%}
        {{ default__generate_database_name(none, node) }}
    {%- endif -%}
{%- endmacro %}
