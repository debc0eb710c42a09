-- One row per leakage category x clinic x month: the events that leaked revenue, the units at stake (visits
-- or episodes) and what one unit is worth, so `dollars_at_stake` = units x unit value is the most that could
-- have been lost. The page turns it into a low-high range with adjustable shares (app/lib/leakage.py):
-- not every no-show slot was lost, not every unfinished planned visit would have happened.
-- Unit values use the KPI definitions, never a second statistic under the same name:
--   visit  = net revenue per visit (kpi net_revenue_per_visit: payments posted / attended visits) over the
--            clinic's 365 days up to as_of;
--   episode = collected net revenue per closed episode of the clinic.
-- Unrecovered denials are actual write-offs (unit = claim, value = what was written off).
with k as (
    select cast(as_of as date) as as_of_date from {{ ref('int_clocks_resolved') }}
),

visit_value as (
    select
        f.clinic_id,
        {{ safe_div('sum(f.numerator)', 'sum(f.denominator)') }} as unit_value_usd
    from {{ ref('kpi_facts_daily') }} as f
    cross join k
    where f.kpi = 'net_revenue_per_visit' and f.date_day > k.as_of_date - 365 and f.date_day <= k.as_of_date
    group by f.clinic_id
),

episode_value as (
    select
        clinic_id,
        avg(net_revenue_usd) as unit_value_usd
    from {{ ref('episodes') }}
    where is_closed
    group by clinic_id
),

events as (
    select
        'unconverted_referrals' as category,
        f.clinic_id,
        cast(date_trunc('month', f.exit_at) as date) as month,
        count(*) as events,
        count(*) as units_at_stake,
        any_value(ev.unit_value_usd) as unit_value_usd,
        'Each referral that exited before evaluation (declined, unreachable, insurance denied, lost, evaluation '
        || 'no-show) might have become an episode worth the clinic''s collected net revenue per closed episode.'
            as assumption
    from {{ ref('referral_funnel') }} as f
    left join episode_value as ev using (clinic_id)
    where f.exit_stage in ('declined', 'unreachable', 'insurance_denied', 'lost', 'eval_no_show')
    group by all
    union all
    select
        case a.status when 'no_show' then 'no_shows' else 'late_cancels' end,
        a.clinic_id,
        cast(date_trunc('month', a.scheduled_start) as date),
        count(*),
        count(*),
        any_value(vv.unit_value_usd),
        case a.status when 'no_show' then 'Each no-show' else 'Each late cancellation (under 24 h notice)' end
        || ' is a visit slot that may not have been refilled or made up, worth the clinic''s net revenue per visit.'
    from {{ ref('appointments') }} as a
    left join visit_value as vv using (clinic_id)
    cross join k
    where a.status in ('no_show', 'late_cancelled') and cast(a.scheduled_start as date) <= k.as_of_date
    group by all
    union all
    select
        'unfinished_plans',
        e.clinic_id,
        cast(date_trunc('month', e.discharge_date) as date),
        count(*),
        sum(greatest(coalesce(e.planned_visits, 0) - e.attended_visits, 0)),
        any_value(vv.unit_value_usd),
        'Each planned visit not attended by an episode that closed without completing its plan of care might '
        || 'have been a visit worth the clinic''s net revenue per visit (some patients recover early).'
    from {{ ref('episodes') }} as e
    left join visit_value as vv using (clinic_id)
    where e.is_closed and not e.plan_completed
    group by all
    union all
    select
        'unrecovered_denials',
        c.clinic_id,
        cast(date_trunc('month', c.service_date) as date),
        count(*),
        count(*),
        {{ safe_div('sum(c.write_off_usd)', 'count(*)') }},
        'Denied claims never paid on appeal: the dollars written off (actual, not estimated).'
    from {{ ref('claims') }} as c
    where c.is_denial_written_off
    group by all
)

select
    category,
    clinic_id,
    month,
    events,
    cast(units_at_stake as double) as units_at_stake,
    cast(coalesce(unit_value_usd, 0) as double) as unit_value_usd,
    cast(units_at_stake * coalesce(unit_value_usd, 0) as double) as dollars_at_stake,
    assumption
from events
where month is not null
