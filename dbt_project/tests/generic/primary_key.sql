{% test primary_key(model, column_name) %}
-- unique and not null in one pass: rows returned are null keys or duplicated keys
select {{ column_name }} as key_value, count(*) as n
from {{ model }}
group by {{ column_name }}
having count(*) > 1 or {{ column_name }} is null
{% endtest %}
