-- One row per distinct touch path (channels joined by ' > '): how many referrals on that path converted
-- (were evaluated), how many did not (exited, or still unconverted nonconversion_after_days after receipt;
-- younger open referrals are left out), and the collected net revenue of the conversions. Input of the
-- Markov and Shapley models in ml/.
with paths as (
    select
        referral_id,
        {{ string_agg_ordered('channel', ' > ', 'touch_seq') }} as path,
        max(path_length) as path_length,
        bool_or(is_conversion) as is_conversion,
        max(received_at) as received_at,
        max(exit_stage) as exit_stage,
        sum(conversion_value_usd) filter (where touch_seq = 1) as value_usd
    from {{ ref('referral_touches') }}
    group by referral_id
)

select
    path,
    max(path_length) as path_length,
    count(*) filter (where is_conversion) as conversions,
    count(*) filter (
        where not is_conversion
        and (
            exit_stage is not null
            or received_at < k.as_of - {{ days_interval(var('nonconversion_after_days')) }}
        )
    ) as non_conversions,
    coalesce(sum(value_usd) filter (where is_conversion), 0) as revenue_usd
from paths
cross join {{ ref('int_clocks_resolved') }} as k
group by path
having count(*) filter (where is_conversion) + count(*) filter (
        where not is_conversion
        and (
            exit_stage is not null
            or received_at < k.as_of - {{ days_interval(var('nonconversion_after_days')) }}
        )
    ) > 0
