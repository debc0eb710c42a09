{% test credits_sum_to_value(model, group_by, total, models, tolerance=0.005) %}
-- every attribution model's credit sums to the conversion's value, and its shares to 1, per conversion
select {{ group_by }}
from {{ model }}
group by {{ group_by }}
having false
{%- for m in models %}
    or abs(sum(credit_{{ m }}) - max({{ total }})) > {{ tolerance }}
    or abs(sum(share_{{ m }}) - 1) > 1e-6
{%- endfor %}
{% endtest %}
