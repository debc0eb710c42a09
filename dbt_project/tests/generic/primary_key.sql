{% test primary_key(model, column_name, written_by=none, entity=none, scope_keys=none) %}
-- unique and not null in one pass: rows returned are null keys or duplicated keys. On an incremental night it checks
-- only the rows the night rewrote, all rows of their keys (macros/scoped_tests.sql): a duplicate can only arise among
-- them. `written_by` (the raw source of an incremental staging table): the keys written tonight; `scope_keys` (the
-- columns of an incremental intermediate's `<model>__scope`): every row sharing a key of tonight's scope.
{%- set since = tests_since() if written_by else none %}
{%- set recomputed = recomputed_tonight(model, scope_keys, 'tested') if scope_keys else none %}
select tested.{{ column_name }} as key_value, count(*) as n
from (select * from {{ model }}) as tested  -- aliased whole: a `where` config makes `model` an aliased subquery
{%- if since is not none %}
where {{ written_tonight(written_by, column_name, since, entity) }}
{%- elif recomputed is not none %}
where {{ recomputed }}
{%- endif %}
group by tested.{{ column_name }}
having count(*) > 1 or tested.{{ column_name }} is null
{% endtest %}
