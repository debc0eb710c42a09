{% test expression_is_true(model, expression) %}
-- rows where `expression` is false (null counts as passing: guard nulls in the expression if needed)
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
