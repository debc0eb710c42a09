{# Data tests scoped to the night (docs/architecture.md "Data tests"). On an incremental build the incremental
   staging tables keep every row of the last good build, which that build tested, and rewrite only the keys new
   loads touched (macros/incremental.sql). A test of such a table checks those keys, all of their rows, old and
   new: the rest cannot have changed. A full build (and `dbt build` on a file without build state) tests every
   row. No var: the watermark is read at run time from the build's own file, so the nightly value neither changes
   the build's fingerprint (a full refresh) nor dbt's parse (a re-parse of the project). #}

{# The raw load the served build read (`meta.build_state.raw_load_id`, kept in the incremental build's copy, the
   same watermark the incremental intermediates use); none on a full build, where every row is tested. #}
{% macro tests_since() -%}
    {%- if not execute or flags.FULL_REFRESH -%}{{ return(none) }}{%- endif -%}
    {%- set rel = adapter.get_relation(database=target.database, schema='meta', identifier='build_state') -%}
    {%- if rel is none -%}{{ return(none) }}{%- endif -%}
    {%- set value = run_query('select max(raw_load_id) from ' ~ rel).columns[0].values()[0] -%}
    {{ return(none if value is none else value) }}
{%- endmacro %}

{# A filter on `column` (the table's natural key) keeping the rows written tonight: every key with a raw row of
   `source` in a load newer than `since` (widened to every key sharing an `entity`, as the incremental model's own
   scope is), and null keys, which no delete removes. #}
{% macro written_tonight(source, column, since, entity=none) -%}
    {%- set relation = raw_source(source, [column, '_load_id'] + ([entity] if entity else [])) -%}
    ({{ column }} is null or {{ column }} in ({{ incremental_scope_keys(relation, column, entity, since) }}))
{%- endmacro %}
