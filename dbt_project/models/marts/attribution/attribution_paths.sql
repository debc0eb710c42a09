-- One row per distinct touch path (channels joined by ' > '): how many referrals on that path converted
-- (were evaluated), how many did not (exited, or still unconverted nonconversion_after_days after receipt;
-- younger open referrals are left out: referral_touches.is_non_conversion), and the collected net revenue of the
-- conversions. Input of the Markov and Shapley models in ml/, over all history and every clinic; the Attribution
-- page cuts the same paths to its months and clinics from referral_touches (decided_at, clinic_id).
with paths as (
    select
        referral_id,
        {{ string_agg_ordered('channel', ' > ', 'touch_seq') }} as path,
        max(path_length) as path_length,
        bool_or(is_conversion) as is_conversion,
        bool_or(is_non_conversion) as is_non_conversion,
        sum(conversion_value_usd) filter (where touch_seq = 1) as value_usd
    from {{ ref('referral_touches') }}
    group by referral_id
)

select
    path,
    max(path_length) as path_length,
    count(*) filter (where is_conversion) as conversions,
    count(*) filter (where is_non_conversion) as non_conversions,
    coalesce(sum(value_usd) filter (where is_conversion), 0) as revenue_usd
from paths
group by path
having count(*) filter (where is_conversion or is_non_conversion) > 0
