{# The channels a practice buys: the ones the marketing_spend contract accepts. Physician referrals and
   direct access carry no spend, so ROI and cost per new patient are computed over these channels only
   (one definition for the Overview KPI and the Attribution & ROI page). #}
{% macro marketing_channels() -%}
    ('search_ads', 'social', 'organic_web', 'events', 'employer', 'word_of_mouth')
{%- endmacro %}
