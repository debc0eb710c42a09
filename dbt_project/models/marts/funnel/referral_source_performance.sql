-- One row per referral source: each referring physician (source_type 'physician', source_id = NPI), each
-- marketing channel (source_type 'marketing', source_id = channel) and direct access. Volume, conversion,
-- time to first visit, visits per episode, plan-of-care completion, collected net revenue, recency, trend
-- (last 90 days vs the 90 before, to as_of) and is_fading: the liaison's call list (a physician who sent at
-- least fading_min_prior referrals in the prior 90 days and at most fading_drop_share of that since).
-- An episode's visits, closure, plan completion and revenue count for its owning referral's source only: a secondary
-- referral (another referral owns its episode, int_referrals_pivoted) counts as a referral, and as evaluated only
-- by its own initial evaluation, so the sources' revenue sums to the episodes' once.
with f as (
    select
        f.*,
        case f.source_type
            when 'physician' then f.referring_physician_id
            when 'marketing' then f.channel
            else 'direct_access'
        end as source_id,
        e.attended_visits,
        e.is_closed,
        e.plan_completed,
        e.net_revenue_usd
    from {{ ref('referral_funnel') }} as f
    left join {{ ref('episodes') }} as e on f.episode_id = e.episode_id and not f.is_secondary_referral
    where f.source_type is not null
),

k as (
    select as_of from {{ ref('int_clocks_resolved') }}
),

agg as (
    select
        f.source_type,
        f.source_id,
        count(*) as referrals,
        count(*) filter (where f.is_evaluated) as evaluated,
        count(*) filter (where f.converted_webpt) as converted,
        median(f.business_days_to_eval) as median_business_days_to_eval,
        avg(f.attended_visits) filter (where f.attended_visits > 0) as visits_per_episode,
        count(*) filter (where f.is_closed) as closed_episodes,
        count(*) filter (where f.plan_completed) as completed_episodes,
        coalesce(sum(f.net_revenue_usd), 0) as net_revenue_usd,
        cast(max(f.received_at) as date) as last_referral_date,
        count(*) filter (where f.received_at > k.as_of - interval 90 day and f.received_at <= k.as_of)
            as referrals_last_90d,
        count(
            *) filter (
            where f.received_at > k.as_of - interval 180 day
            and f.received_at <= k.as_of - interval 90 day
        ) as referrals_prior_90d
    from f, k
    group by f.source_type, f.source_id
)

select
    a.source_type,
    a.source_id,
    case a.source_type
        when 'physician' then coalesce(p.physician_name, 'Unknown physician ' || a.source_id)
        when 'marketing' then replace(a.source_id, '_', ' ')
        else 'Direct access'
    end as source_name,
    p.specialty,
    p.practice_name,
    a.referrals,
    a.evaluated,
    a.converted,
    {{ safe_div('a.converted', 'a.referrals') }} as conversion_rate,
    a.median_business_days_to_eval,
    a.visits_per_episode,
    a.closed_episodes,
    {{ safe_div('a.completed_episodes', 'a.closed_episodes') }} as poc_completion_rate,
    a.net_revenue_usd,
    a.last_referral_date,
    a.referrals_last_90d,
    a.referrals_prior_90d,
    {{ safe_div('a.referrals_last_90d - a.referrals_prior_90d', 'a.referrals_prior_90d') }} as trend_pct,
    a.source_type = 'physician'
    and a.referrals_prior_90d >= {{ var('fading_min_prior') }}
    and a.referrals_last_90d <= {{ var('fading_drop_share') }} * a.referrals_prior_90d as is_fading
from agg as a
left join {{ ref('dim_referring_physicians') }} as p
    on a.source_type = 'physician' and a.source_id = p.physician_id
