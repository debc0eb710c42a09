-- One row per conversion (evaluated referral) x touch: the touch's channel and time, and the dollars of the
-- episode's collected net revenue that each heuristic model credits to it (each credit column sums to
-- conversion_value_usd per referral); share_* columns are the same credit as a fraction of one conversion.
-- Shares sum to 1 per conversion under every model:
--   first / last: all to the first / last touch; linear: 1/n each;
--   time_decay: weight 2^(-hours before conversion / (24 * half-life days)), normalised; hours elapsed, both wall-clock
--   times read in the clinic's zone (hours_between), so a DST change between touch and conversion moves no weight.
--   No touch is after the conversion: referral_touches ends the path at the source touch, timed at receipt or at the
--   evaluation if that came first, and the data test timestamps_in_order holds it (a later touch once got the
--   biggest weight through the clamp below). The clamp to 0 hours is left for a time the spring-forward night skips
--   (02:30 reads as 03:30 daylight time, minutes "after" a 03:00 conversion on the same wall clock);
--   position (40/20/40): n = 1 -> 1; n = 2 -> 0.5 each; n >= 3 -> 0.4 first, 0.4 last, 0.2 / (n - 2) between.
with t as (
    select
        rt.*,
        power(
            2.0, -greatest({{ hours_between('rt.touched_at', 'rt.converted_at', 'z.timezone') }}, 0)
            / (24.0 * {{ var('time_decay_half_life_days') }})
        ) as decay_weight
    from {{ ref('referral_touches') }} as rt
    left join {{ ref('stg_raw__clinics') }} as z on rt.clinic_id = z.clinic_id
    where rt.is_conversion
),

shares as (
    select
        *,
        case when touch_seq = 1 then 1.0 else 0.0 end as share_first,
        case when touch_seq = path_length then 1.0 else 0.0 end as share_last,
        -- doubles (Spark divides decimal literals as decimals, DuckDB as doubles: same value here)
        cast(1.0 as double) / path_length as share_linear,
        decay_weight / sum(decay_weight) over (partition by referral_id) as share_time_decay,
        case
            when path_length = 1 then 1.0
            when path_length = 2 then 0.5
            when touch_seq = 1 or touch_seq = path_length then 0.4
            else cast(0.2 as double) / (path_length - 2)
        end as share_position
    from t
),

credited as (
    select
        referral_id,
        touch_seq,
        touch_id,
        channel,
        campaign,
        touched_at,
        is_source_touch,
        path_length,
        clinic_id,
        converted_at,
        conversion_value_usd,
        -- rounded to 9 decimals: exact-looking values (100, not 99.99999999999999); sums stay within 1e-6
        round(share_first, 9) as share_first,
        round(share_last, 9) as share_last,
        round(share_linear, 9) as share_linear,
        round(share_time_decay, 9) as share_time_decay,
        round(share_position, 9) as share_position,
        round(conversion_value_usd * share_first, 9) as credit_first,
        round(conversion_value_usd * share_last, 9) as credit_last,
        round(conversion_value_usd * share_linear, 9) as credit_linear,
        round(conversion_value_usd * share_time_decay, 9) as credit_time_decay,
        round(conversion_value_usd * share_position, 9) as credit_position
    from shares
)

select
    referral_id,
    touch_seq,
    touch_id,
    channel,
    campaign,
    touched_at,
    is_source_touch,
    path_length,
    clinic_id,
    converted_at,
    cast(date_trunc('month', converted_at) as date) as conversion_month,
    conversion_value_usd,
    credit_first,
    credit_last,
    credit_linear,
    credit_time_decay,
    credit_position,
    share_first,
    share_last,
    share_linear,
    share_time_decay,
    share_position
from credited
