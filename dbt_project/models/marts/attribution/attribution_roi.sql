-- One row per attribution model x channel x month: marketing spend, conversions and net revenue the model
-- credits to the channel for conversions in that month, ROI = (revenue - spend) / spend and cost per new
-- patient = spend / attributed conversions (null where there is no spend or no conversion). Referral
-- sources that are not bought (physician_referral, direct_access) carry no spend; `is_marketing` marks the
-- bought channels (macro marketing_channels), the only ones a marketing ROI or cost per new patient sums.
with credited as (
    {% for m in ['first', 'last', 'linear', 'time_decay', 'position'] %}
        select
            '{{ m }}' as model,
            channel,
            conversion_month as month,
            sum(share_{{ m }}) as attributed_conversions,
            sum(credit_{{ m }}) as attributed_revenue_usd
        from {{ ref('attribution_touches') }}
        group by all
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

spend as (
    select
        channel,
        month,
        sum(spend_usd) as spend_usd
    from {{ ref('int_marketing_spend_monthly') }}
    group by all
),

models as (
    select * from (values ('first'), ('last'), ('linear'), ('time_decay'), ('position')) as m (model)  -- noqa: AL05
),

spend_by_model as (
    select
        m.model,
        s.channel,
        s.month,
        s.spend_usd
    from spend as s cross join models as m
)

select
    coalesce(c.model, s.model) as model,
    coalesce(c.channel, s.channel) as channel,
    coalesce(c.month, s.month) as month,
    coalesce(c.channel, s.channel) in {{ marketing_channels() }} as is_marketing,
    coalesce(s.spend_usd, 0) as spend_usd,
    coalesce(c.attributed_conversions, 0) as attributed_conversions,
    coalesce(c.attributed_revenue_usd, 0) as attributed_revenue_usd,
    {{ safe_div('coalesce(c.attributed_revenue_usd, 0) - s.spend_usd', 's.spend_usd') }} as roi,
    {{ safe_div('s.spend_usd', 'c.attributed_conversions') }} as cost_per_new_patient
from credited as c
full outer join spend_by_model as s
    on c.model = s.model and c.channel = s.channel and c.month = s.month
