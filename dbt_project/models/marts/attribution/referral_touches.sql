-- One row per referral x touch, in time order: the marketing touches before the referral was received, then
-- the referral source itself as the final touch (channel 'physician_referral', 'direct_access', or the lead's
-- marketing channel). Ties in time keep marketing touches first, then touch id order.
-- A secondary referral (another referral owns its episode: int_referrals_pivoted) has no path: it is neither a
-- conversion (the episode's conversion and revenue are its owner's, credited once) nor a referral that failed to
-- convert.
with f as (
    select
        f.referral_id,
        f.clinic_id,
        f.received_at,
        f.evaluated_at,
        f.is_evaluated,
        f.exit_stage,
        f.source_channel,
        coalesce(e.net_revenue_usd, 0) as episode_net_revenue_usd
    from {{ ref('referral_funnel') }} as f
    left join {{ ref('episodes') }} as e on f.episode_id = e.episode_id
    where not f.is_secondary_referral
),

touches as (
    select
        t.touch_id,
        t.referral_id,
        t.channel,
        t.campaign,
        t.touched_at,
        0 as is_source
    from {{ ref('stg_raw__marketing_touches') }} as t
    inner join f using (referral_id)
    where t.touched_at <= f.received_at
    union all
    select
        'source:' || referral_id,
        referral_id,
        source_channel,
        null,
        received_at,
        1
    from f
    where source_channel is not null
)

select
    t.referral_id,
    row_number() over (partition by t.referral_id order by t.touched_at, t.is_source, t.touch_id) as touch_seq,
    t.touch_id,
    t.channel,
    t.campaign,
    t.touched_at,
    t.is_source = 1 as is_source_touch,
    count(*) over (partition by t.referral_id) as path_length,
    f.clinic_id,
    f.received_at,
    f.is_evaluated as is_conversion,
    f.evaluated_at as converted_at,
    f.exit_stage,
    case when f.is_evaluated then f.episode_net_revenue_usd else 0 end as conversion_value_usd
from touches as t
inner join f using (referral_id)
