{% test primary_key(model, column_name, written_by=none, entity=none) %}
-- unique and not null in one pass: rows returned are null keys or duplicated keys. `written_by` (the raw source
-- of an incremental staging table) scopes it on an incremental night to the keys written tonight, all their rows
-- (macros/scoped_tests.sql): a duplicate can only arise among the keys the night deleted and re-appended.
{%- set since = tests_since() if written_by else none %}
select {{ column_name }} as key_value, count(*) as n
from {{ model }}
{%- if since is not none %}
where {{ written_tonight(written_by, column_name, since, entity) }}
{%- endif %}
group by {{ column_name }}
having count(*) > 1 or {{ column_name }} is null
{% endtest %}
