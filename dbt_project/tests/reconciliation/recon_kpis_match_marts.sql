-- Reconciliation: practice_kpis (whole practice, monthly) adds up to the marts it summarises.
with k as (select as_of from {{ ref('int_clocks_resolved') }}),

kpi as (
    select
        kpi,
        sum(numerator) as num,
        sum(denominator) as den
    from {{ ref('practice_kpis') }}
    where clinic_id = 'ALL' and grain = 'month'
    group by kpi
),

checks as (
    select
        'no_show numerator' as check_name,
        (
            select num from kpi
            where kpi = 'no_show_rate'
        ) as kpi_value,
        (
            select count(*) from {{ ref('appointments') }}, k
            where status = 'no_show' and scheduled_start <= k.as_of)
            as mart_value
    union all
    select
        'referrals',
        (
            select den from kpi
            where kpi = 'referral_conversion'
        ),
        (
            select count(*) from {{ ref('referral_funnel') }}, k
            where received_at <= k.as_of
        )
    union all
    -- denial rate is over adjudicated claims (a maturing cohort does not count its pending claims)
    select
        'claims adjudicated',
        (
            select den from kpi
            where kpi = 'denial_rate'
        ),
        (
            select count(*) from {{ ref('claims') }}, k
            where is_adjudicated and cast(submitted_at as date) <= cast(k.as_of as date)
        )
    union all
    -- cash-basis KPIs: every payment that landed, by its posting date, is counted once (also when its claim row
    -- was quarantined: no inner join to claims, money never vanishes in a join)
    select
        'collections posted',
        (
            select num from kpi
            where kpi = 'net_revenue_per_visit'
        ),
        (
            select sum(r.amount_usd) from {{ ref('int_remittances_linked') }} as r, k
            where r.event_type in ('payer_payment', 'patient_payment')
                and cast(r.event_at as date) <= cast(k.as_of as date)
        )
    union all
    select
        'clinics = ALL (collections)',
        (
            select sum(numerator) from {{ ref('practice_kpis') }}
            where clinic_id <> 'ALL' and grain = 'month' and kpi = 'net_revenue_per_visit'
        ),
        (
            select num from kpi
            where kpi = 'net_revenue_per_visit'
        )
    union all
    select
        'collections posted (collection rate)',
        (
            select num from kpi
            where kpi = 'net_collection_rate'
        ),
        (
            select num from kpi
            where kpi = 'net_revenue_per_visit'
        )
    union all
    select
        'closed episodes',
        (
            select den from kpi
            where kpi = 'visits_per_discharge'
        ),
        (
            select count(*) from {{ ref('episodes') }}, k
            where is_closed and discharge_date <= cast(k.as_of as date)
        )
    union all
    select
        'day = month (appointments)',
        (
            select sum(denominator) from {{ ref('practice_kpis') }}
            where clinic_id = 'ALL' and grain = 'day' and kpi = 'arrival_rate'
        ),
        (
            select den from kpi
            where kpi = 'arrival_rate'
        )
    union all
    select
        'clinics = ALL (appointments)',
        (
            select sum(denominator) from {{ ref('practice_kpis') }}
            where clinic_id <> 'ALL' and grain = 'month' and kpi = 'arrival_rate'
        ),
        (
            select den from kpi
            where kpi = 'arrival_rate'
        )
)

select * from checks
where abs(coalesce(kpi_value, 0) - coalesce(mart_value, 0)) > 0.005
