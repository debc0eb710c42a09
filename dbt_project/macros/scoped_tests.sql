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

{# The rows an incremental intermediate recomputed tonight. Its pre-hooks wrote the keys of its scope to
   `<model>__scope` (kept until the build ends), deleted every row of those keys, and the model appended rows whose
   keys are all in the scope (macros/incremental.sql), so every other row is as the served build left and tested
   it: a duplicate can only appear among rows sharing a scope key. A filter on the tested relation (aliased `alias`)
   keeping every row sharing a scope key (`keys`: columns of the scope table, which the model has too, not
   necessarily the tested key) and rows with a null key, which no delete removes. None (test every row) on a full
   build, off a build (no build state) and when the model did not run incrementally in this build (no scope table:
   it was computed whole). Asked of the database, not dbt's relation cache, which does not see a hook's table. #}
{% macro recomputed_tonight(model, keys, alias) -%}
    {%- if tests_since() is none or model.identifier is not defined -%}{{ return(none) }}{%- endif -%}
    {%- set scope = model.incorporate(path={'identifier': model.identifier ~ '__scope'}) -%}
    {%- set found = run_query(
        "select count(*) from duckdb_tables() where database_name = '" ~ scope.database ~ "' and schema_name = '"
        ~ scope.schema ~ "' and table_name = '" ~ scope.identifier ~ "'"
    ).columns[0].values()[0] -%}
    {%- if not found -%}{{ return(none) }}{%- endif -%}
    {%- set nulls = [] -%}
    {%- set same = [] -%}
    {%- for k in keys -%}
        {%- do nulls.append(alias ~ '.' ~ k ~ ' is null') -%}
        {%- do same.append('scope_key.' ~ k ~ ' = ' ~ alias ~ '.' ~ k) -%}
    {%- endfor -%}
    {{ return('(' ~ nulls | join(' or ') ~ ' or exists (select 1 from ' ~ scope ~ ' as scope_key where '
        ~ same | join(' and ') ~ '))') }}
{%- endmacro %}
