-- One row per conversion (evaluated referral) x touch: the touch's channel and time, and the dollars of the
-- episode's collected net revenue that each heuristic model credits to it (each credit column sums to
-- conversion_value_usd per referral); share_* columns are the same credit as a fraction of one conversion.
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
from {{ ref('int_touches_credited') }}
