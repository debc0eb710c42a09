-- One row per clinic (and 'ALL' = whole practice) x grain (day / week / month) x period x KPI, in long
-- format: value = numerator / denominator (null when the denominator is 0). pct values are fractions
-- (0.10 = 10%). Definitions, units and healthy bands: kpi_definitions. Weeks start on Monday.
-- Additive KPIs come from kpi_facts_daily; days_in_ar is the balance at the period's last day (or
-- as_of) over the 90-day average daily charges then; cost_per_new_patient and attributed_roi are monthly.
-- Cohort KPIs carry their maturity: cohort (members), pending (no outcome yet), resolved_share, and
-- is_maturing when fewer than var maturity_resolved_share (95%) of the cohort has an outcome: the app
-- withholds the healthy-band verdict for such periods and greys them out in trends.
with grains as (
    select * from (values ('day'), ('week'), ('month')) as g (grain)  -- noqa: AL05
),

k as (
    select cast(as_of as date) as as_of_date from {{ ref('int_clocks_resolved') }}
),

-- the additive KPIs (formulas in kpi_facts_daily, one CTE each), summed over the days of each period
additive as (
    select
        coalesce(f.clinic_id, 'ALL') as clinic_id,
        g.grain,
        cast(date_trunc(g.grain, f.date_day) as date) as period_start,
        f.kpi,
        sum(f.numerator) as numerator,
        sum(f.denominator) as denominator,
        sum(f.cohort) as cohort,
        sum(f.pending) as pending
    from {{ ref('kpi_facts_daily') }} as f
    cross join grains as g
    group by grouping sets (
        (f.clinic_id, g.grain, cast(date_trunc(g.grain, f.date_day) as date), f.kpi),
        (g.grain, cast(date_trunc(g.grain, f.date_day) as date), f.kpi)
    )
),

ar_period_ends as (
    select
        b.clinic_id,
        g.grain,
        cast(date_trunc(g.grain, b.date_day) as date) as period_start,
        b.ar_balance_usd,
        b.charges_90d_usd
    from {{ ref('int_ar_balances_daily') }} as b
    cross join grains as g
    cross join k
    where b.date_day = least(
            case g.grain
                when 'day' then b.date_day
                when 'week' then cast(date_trunc('week', b.date_day) as date) + 6
                else last_day(b.date_day)
            end,
            k.as_of_date
        )
),

-- days_in_ar = open A/R at the period's last day (or as_of) / average daily charges of the 90 days ending then
days_in_ar as (
    select
        coalesce(clinic_id, 'ALL') as clinic_id,
        grain,
        period_start,
        'days_in_ar' as kpi,
        sum(ar_balance_usd) as numerator,
        sum(charges_90d_usd) / 90.0 as denominator,
        null as cohort,
        null as pending
    from ar_period_ends
    group by grouping sets ((clinic_id, grain, period_start), (grain, period_start))
),

marketing_spend as (
    select
        clinic_id,
        month,
        sum(spend_usd) as spend_usd
    from {{ ref('int_marketing_spend_monthly') }}
    group by all
),

new_patients as (
    select
        clinic_id,
        cast(date_trunc('month', evaluated_at) as date) as month,
        count(*) as new_patients
    from {{ ref('referral_funnel') }}
    where source_type = 'marketing' and is_evaluated
    group by all
),

marketing_revenue as (
    select
        t.clinic_id,
        t.conversion_month as month,
        sum(t.credit_linear) as revenue_usd
    from {{ ref('attribution_touches') }} as t
    where t.channel in {{ marketing_channels() }}
    group by all
),

-- months the practice reported spend for (any clinic): in them a clinic without a spend row spent $0; in other
-- months the spend is unknown (marketing_spend not loaded, or not for that month), so cost per new patient and
-- ROI have no value rather than a $0 cost
spend_months as (
    select distinct month
    from marketing_spend
),

marketing as (
    select
        coalesce(s.clinic_id, n.clinic_id, r.clinic_id) as clinic_id,
        coalesce(s.month, n.month, r.month) as month,
        case when m.month is not null then coalesce(s.spend_usd, 0) end as spend_usd,
        coalesce(n.new_patients, 0) as new_patients,
        coalesce(r.revenue_usd, 0) as revenue_usd
    from marketing_spend as s
    full outer join new_patients as n using (clinic_id, month)
    full outer join marketing_revenue as r
        on r.clinic_id = coalesce(s.clinic_id, n.clinic_id) and r.month = coalesce(s.month, n.month)
    left join spend_months as m on coalesce(s.month, n.month, r.month) = m.month
),

-- cost_per_new_patient = marketing spend in the month / new patients from marketing evaluated in the month
cost_per_new_patient as (
    select
        coalesce(clinic_id, 'ALL') as clinic_id,
        'month' as grain,
        month as period_start,
        'cost_per_new_patient' as kpi,
        sum(spend_usd) as numerator,
        sum(new_patients) as denominator,
        null as cohort,
        null as pending
    from marketing, k
    where month <= k.as_of_date
    group by grouping sets ((clinic_id, month), (month))
),

-- attributed_roi = (linear-credited revenue of the paid channels - spend) / spend, by conversion month
attributed_roi as (
    select
        coalesce(clinic_id, 'ALL') as clinic_id,
        'month' as grain,
        month as period_start,
        'attributed_roi' as kpi,
        -- a month without reported spend adds its credited revenue at $0 spend, as the Attribution page sums a
        -- range (one statistic); with no spend at all the denominator is 0 and there is no value
        sum(revenue_usd) - sum(coalesce(spend_usd, 0)) as numerator,
        sum(coalesce(spend_usd, 0)) as denominator,
        null as cohort,
        null as pending
    from marketing, k
    where month <= k.as_of_date
    group by grouping sets ((clinic_id, month), (month))
),

unioned as (
    select * from additive
    union all
    select * from days_in_ar
    union all
    select * from cost_per_new_patient
    union all
    select * from attributed_roi
)

select
    clinic_id,
    grain,
    period_start,
    kpi,
    cast(numerator as double) as numerator,
    cast(denominator as double) as denominator,
    cast({{ safe_div('numerator', 'denominator') }} as double) as value,
    cast(cohort as double) as cohort,
    cast(pending as double) as pending,
    cast(case when cohort > 0 then 1 - pending / cohort end as double) as resolved_share,
    coalesce(cohort > 0 and 1 - pending / cohort < {{ var('maturity_resolved_share') }}, false) as is_maturing
from unioned
where coalesce(denominator, 0) <> 0 or coalesce(numerator, 0) <> 0 or coalesce(pending, 0) <> 0
