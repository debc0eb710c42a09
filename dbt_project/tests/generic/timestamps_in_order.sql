{% test timestamps_in_order(model, columns) %}
-- rows where a later stage's timestamp precedes an earlier stage's (nulls, i.e. stages not reached, are skipped)
select *
from {{ model }}
where false
{%- for i in range(columns | length) %}{% for j in range(i + 1, columns | length) %}
   or ({{ columns[i] }} is not null and {{ columns[j] }} is not null and {{ columns[j] }} < {{ columns[i] }})
{%- endfor %}{% endfor %}
{% endtest %}
