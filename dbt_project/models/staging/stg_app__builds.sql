-- This build's id (app_state.build, one row written by ptpulse/build/app_state.py before dbt runs); 'dev' when dbt runs
-- without it. Passed as data, not as a parse-time env_var: a new id every build would make dbt re-parse.
{%- set rel = source('app_state', 'build') -%}
{%- if execute -%}
    {%- set found = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) -%}
{%- else -%}
    {%- set found = true -%}
{%- endif %}
select
    {% if found -%}
        coalesce((select max(cast(build_id as string)) from {{ rel }}), 'dev')
    {%- else -%}
        cast('dev' as string)
    {%- endif %} as build_id
