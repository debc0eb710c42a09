-- One row per referral x touch, in time order: the marketing touches before the referral's source touch, then
-- the referral source itself as the final touch (channel 'physician_referral', 'direct_access', the lead's
-- marketing channel, or 'unknown_source' when the received row names none: the contract lets source_type be
-- blank, and such a referral's conversion and revenue must still be credited, to a channel that says so). Ties in
-- time keep marketing touches first, then touch id order.
-- The source touch is at receipt, or at the evaluation when the paperwork was received after it: nothing after
-- the conversion is on the path (a touch between the evaluation and a late receipt did not bring the patient).
-- A secondary referral (another referral owns its episode: int_referrals_pivoted) has no path: it is neither a
-- conversion (the episode's conversion and revenue are its owner's, credited once) nor a referral that failed to
-- convert.
-- decided_at: when the referral converted (evaluation), or was counted as not converting (its exit, else receipt +
-- nonconversion_after_days for one still open that long); null while open and younger. attribution_paths counts
-- the paths by it, and the Attribution page cuts the paths to its months with it.
with f as (
    select
        f.referral_id,
        f.clinic_id,
        f.received_at,
        f.evaluated_at,
        f.is_evaluated,
        f.exit_stage,
        f.exit_at,
        coalesce(f.source_channel, 'unknown_source') as source_channel,
        case
            when
                f.is_evaluated and (f.received_at is null or f.evaluated_at < f.received_at)
                then f.evaluated_at
            else f.received_at
        end as source_touched_at,
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
    where t.touched_at <= f.source_touched_at
    union all
    select
        'source:' || referral_id,
        referral_id,
        source_channel,
        null,
        source_touched_at,
        1
    from f
),

decided as (
    select
        f.referral_id,
        coalesce(
            not f.is_evaluated and (
                f.exit_stage is not null
                or f.received_at < k.as_of - {{ days_interval(var('nonconversion_after_days')) }}
            ),
            false
        ) as is_non_conversion,
        case
            when f.is_evaluated then f.evaluated_at
            when f.exit_stage is not null then coalesce(f.exit_at, f.received_at, k.as_of)
            when f.received_at < k.as_of - {{ days_interval(var('nonconversion_after_days')) }}
                then f.received_at + {{ days_interval(var('nonconversion_after_days')) }}
        end as decided_at
    from f
    cross join {{ ref('int_clocks_resolved') }} as k
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
    d.is_non_conversion,
    d.decided_at,
    case when f.is_evaluated then f.episode_net_revenue_usd else 0 end as conversion_value_usd
from touches as t
inner join f using (referral_id)
inner join decided as d using (referral_id)
