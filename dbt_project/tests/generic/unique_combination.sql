{% test unique_combination(model, columns, scope_keys=none) %}
-- rows whose combination of `columns` is not unique. `scope_keys` (an incremental intermediate's `<model>__scope`
-- columns): on an incremental night only the rows sharing a key of tonight's scope (macros/scoped_tests.sql).
{%- set recomputed = recomputed_tonight(model, scope_keys, 'tested') if scope_keys else none %}
select {{ columns | join(', ') }}, count(*) as n
from (select * from {{ model }}) as tested  -- aliased whole: a `where` config makes `model` an aliased subquery
{%- if recomputed is not none %}
where {{ recomputed }}
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
