{% test equal_aggregate(model, expression, compare_model, compare_expression, tolerance=0.005) %}
-- reconciliation: an aggregate over this model must equal the same aggregate over another relation
select a.v as this_value, b.v as other_value
from (select {{ expression }} as v from {{ model }}) as a
cross join (select {{ compare_expression }} as v from {{ compare_model }}) as b
where abs(coalesce(a.v, 0) - coalesce(b.v, 0)) > {{ tolerance }}
{% endtest %}
