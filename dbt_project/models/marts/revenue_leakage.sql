-- One row per leakage category x clinic x month: how many events leaked revenue and an estimate of the
-- dollars lost, with the assumption behind each estimate stated in `assumption`. Rates are the clinic's own
-- (all claims and episodes up to as_of): net revenue per visit = net collections / attended visits;
-- net revenue per episode = collected net revenue of closed episodes / closed episodes.
with k as (
    select as_of from {{ ref('int_clocks_resolved') }}
),

visit_rate as (
    select
        v.clinic_id,
        {{ safe_div('coalesce(any_value(c.net_collected_usd), 0)', 'count(*)') }} as per_visit
    from {{ ref('visits') }} as v
    left join (
        select clinic_id, sum(net_collected_usd) as net_collected_usd from {{ ref('claims') }} group by 1
    ) as c using (clinic_id)
    group by v.clinic_id
),

episode_rate as (
    select clinic_id, avg(net_revenue_usd) as per_episode
    from {{ ref('episodes') }}
    where is_closed
    group by clinic_id
),

events as (
    select
        'unconverted_referrals' as category, f.clinic_id, cast(date_trunc('month', f.exit_at) as date) as month,
        count(*) as events, count(*) * coalesce(any_value(er.per_episode), 0) as dollars_lost,
        'Each referral that exited before evaluation (declined, unreachable, insurance denied, lost, evaluation '
        || 'no-show) would have brought the clinic''s average collected net revenue per closed episode.' as assumption
    from {{ ref('referral_funnel') }} as f
    left join episode_rate as er using (clinic_id)
    where f.exit_stage in ('declined', 'unreachable', 'insurance_denied', 'lost', 'eval_no_show')
    group by all
    union all
    select
        case a.status when 'no_show' then 'no_shows' else 'late_cancels' end, a.clinic_id,
        cast(date_trunc('month', a.scheduled_start) as date),
        count(*), count(*) * coalesce(any_value(vr.per_visit), 0),
        case a.status when 'no_show' then 'Each no-show' else 'Each late cancellation (under 24 h notice)' end
        || ' is a visit slot that could not be refilled, worth the clinic''s net revenue per attended visit.'
    from {{ ref('appointments') }} as a
    left join visit_rate as vr using (clinic_id)
    cross join k
    where a.status in ('no_show', 'late_cancelled') and a.scheduled_start <= k.as_of
    group by all
    union all
    select
        'unfinished_plans', e.clinic_id, cast(date_trunc('month', e.discharge_date) as date),
        count(*), sum(greatest(coalesce(e.planned_visits, 0) - e.attended_visits, 0)) * coalesce(any_value(vr.per_visit), 0),
        'Each planned visit not attended by an episode that closed without completing its plan of care is '
        || 'worth the clinic''s net revenue per attended visit.'
    from {{ ref('episodes') }} as e
    left join visit_rate as vr using (clinic_id)
    where e.is_closed and not e.plan_completed
    group by all
    union all
    select
        'unrecovered_denials', c.clinic_id, cast(date_trunc('month', c.service_date) as date),
        count(*), sum(c.write_off_usd),
        'Denied claims never paid on appeal: the dollars written off (actual, not estimated).'
    from {{ ref('claims') }} as c
    where c.is_denial_written_off
    group by all
)

select category, clinic_id, month, events, cast(dollars_lost as double) as dollars_lost, assumption
from events
where month is not null
