{% test not_null_columns(model, columns) %}
-- not_null of several columns in one scan of the table (one node instead of one per column): one row per column
-- holding nulls, naming it, with how many rows are null there
with nulls as (
    select
        {% for c in columns -%}
            sum(case when {{ c }} is null then 1 else 0 end) as nulls_{{ loop.index }}{{ ',' if not loop.last }}
        {% endfor %}
    from {{ model }}
)
{%- for c in columns %}
select
    '{{ c }}' as column_name,
    nulls_{{ loop.index }} as null_rows
from nulls
where nulls_{{ loop.index }} > 0
{{ 'union all' if not loop.last }}
{%- endfor %}
{% endtest %}
