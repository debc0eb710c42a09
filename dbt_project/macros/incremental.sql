{# Incremental staging of the big event sources (docs/architecture.md "Incremental builds"). The merge rule
   (merge_latest) is a window over every version of a key, so the nightly cost is in re-deduplicating years of
   raw rows. An incremental staging table keeps the merged rows of the last good build and re-merges only the
   keys that new loads touched: every key with a raw row in a load newer than the table's watermark, all of its
   versions (old and new) re-merged with the unchanged rule, so a correction or a tombstone for a record of any
   age replaces it exactly. The pre-hook deletes those keys first (a key whose latest version is now a tombstone
   stays deleted); the model appends their re-merged rows. Keyed by load id, not event time, so no look-back
   window is needed for exactness; the build full-refreshes on demand, weekly, and when contracts, models or
   vars change (ptpulse/build/incremental.py). #}

{# The highest _load_id in the table as the last good build left it; null when not an incremental run. Every
   load at or below it was seen by that build (builds and loads are serialised by the pipeline lock); a lower
   value only re-merges a few more keys (a load whose rows all lost or were tombstones), never fewer. Rendered
   before the pre-hook deletes anything, for the model and for the hook alike. #}
{% macro incremental_watermark() -%}
    {%- if not execute or not is_incremental() -%}{{ return(none) }}{%- endif -%}
    {%- set value = run_query('select max(_load_id) from ' ~ this).columns[0].values()[0] -%}
    {{ return(-1 if value is none else value) }}
{%- endmacro %}

{# The natural keys whose merged row may have changed since the watermark: keys with a row in a newer load and,
   when the source has an `entity` (merge_latest keeps one source system per entity), every key sharing an
   entity with such a key. #}
{% macro incremental_scope_keys(relation, key, entity, since) -%}
    select n.{{ key }} from {{ relation }} as n where n._load_id > {{ since }}
    {%- if entity %}
    union
    select e.{{ key }} from {{ relation }} as e
    where e.{{ entity }} in (
        select t.{{ entity }} from {{ relation }} as t
        where t.{{ key }} in (select n2.{{ key }} from {{ relation }} as n2 where n2._load_id > {{ since }})
    )
    {%- endif %}
{%- endmacro %}

{# What merge_latest reads: the whole raw relation, or on an incremental run only the versions of the keys in
   scope. Unchanged for every model that is not incremental. #}
{% macro incremental_rows(relation, key_columns, entity=none) -%}
    {%- set since = incremental_watermark() -%}
    {%- if since is none -%}{{ return(relation) }}{%- endif -%}
    {%- if key_columns | length != 1 -%}
        {{ exceptions.raise_compiler_error(model.name ~ ': incremental staging needs a one-column natural key') }}
    {%- endif -%}
    {%- set key = key_columns[0] -%}
    {{ return('(select * from ' ~ relation ~ ' as r where r.' ~ key ~ ' in ('
        ~ incremental_scope_keys(relation, key, entity, since) ~ '))') }}
{%- endmacro %}

{# Pre-hook of an incremental staging model: delete the keys in scope, so their re-merged rows replace them and a
   tombstoned key stays gone. Empty on a full build. #}
{% macro incremental_delete_scope(name, key, entity=none) -%}
    {%- if is_incremental() -%}
        {%- set cols = [key, '_load_id'] + ([entity] if entity else []) -%}
        {%- set relation = raw_source(name, cols) -%}
        delete from {{ this }}
        where {{ key }} in ({{ incremental_scope_keys(relation, key, entity, incremental_watermark()) }})
    {%- endif -%}
{%- endmacro %}
