-- Reconciliation: every entity and dollar in raw (after the latest-wins dedup, i.e. staging) reaches its mart
-- exactly once: nothing dropped or doubled by a join. One row per mismatch.
-- It is also the primary-key test (unique and not null, error severity) of the two staging VIEWS it reads,
-- intake events and patients: each is a window dedup over a raw table, recomputed by every query that reads it,
-- so each is scanned once, here, for both. The incremental staging tables (scheduling events, claims, charges,
-- remittances, documentation) have their own primary_key tests, scoped on a nightly build to the keys written
-- that night (macros/scoped_tests.sql); int_remittances_linked's key has its own primary_key test.
with intake as {{ cte_materialized() }} (
    select count(distinct referral_id) as referrals, {{ staging_pk_counts('event_id') }}
    from {{ ref('stg_raw__intake_events') }}
),

sched as {{ cte_materialized() }} (
    select count(distinct appointment_id) as appointments
    from {{ ref('stg_raw__scheduling_events') }}
),

stg_claims as {{ cte_materialized() }} (
    select
        count(*) as n,
        -- a voided claim (its latest version a void) is billed 0 in the marts, its billed in voided_usd
        sum(billed_usd) filter (where status <> 'voided') as billed,
        sum(billed_usd) filter (where status = 'voided') as voided
    from {{ ref('stg_raw__claims') }}
),

stg_charges as {{ cte_materialized() }} (
    select
        count(*) as n,
        sum(charge_usd) as usd
    from {{ ref('stg_raw__charges') }}
),

stg_patients as {{ cte_materialized() }} (
    select count(*) as n, {{ staging_pk_counts('patient_id') }}
    from {{ ref('stg_raw__patients') }}
),

-- staging + the claim rule: the payments that count, of claims in the mart (a filter, not a join: no row doubles)
remit as {{ cte_materialized() }} (
    select
        sum(amount_usd) filter (where event_type = 'payer_payment') as payer_paid,
        sum(amount_usd) filter (where event_type = 'contractual_adjustment') as contractual,
        sum(amount_usd) filter (where event_type = 'patient_responsibility') as patient_resp,
        sum(amount_usd) filter (where event_type = 'patient_payment') as patient_paid,
        sum(amount_usd) filter (where event_type = 'write_off') as write_off
    from {{ ref('int_remittances_linked') }}
    where claim_id in (select claim_id from {{ ref('claims') }})
),

m as {{ cte_materialized() }} (
    select
        count(*) as n,
        sum(billed_usd) as billed,
        sum(voided_usd) as voided,
        sum(payer_paid_usd) as payer_paid,
        sum(contractual_adj_usd) as contractual,
        sum(patient_resp_usd) as patient_resp,
        sum(patient_paid_usd) as patient_paid,
        sum(write_off_usd) as write_off
    from {{ ref('claims') }}
),

checks as (
    select
        'referral_funnel rows' as check_name,
        (select count(*) from {{ ref('referral_funnel') }}) as mart_value,
        (select referrals from intake) as raw_value
    union all
    select
        'appointments rows',
        (select count(*) from {{ ref('appointments') }}),
        (select appointments from sched)
    union all
    select
        'claims rows',
        (select n from m),
        (select n from stg_claims)
    union all
    select
        'charge_lines rows',
        (select count(*) from {{ ref('charge_lines') }}),
        (select n from stg_charges)
    union all
    select
        'dim_patients rows',
        (select count(*) from {{ ref('dim_patients') }}),
        (select n from stg_patients)
    union all
    select
        'visits rows',
        (select count(*) from {{ ref('visits') }}),
        (
            select count(*) from {{ ref('appointments') }}
            where status = 'completed'
        )
    union all
    select
        'billed usd',
        (select billed from m),
        (select billed from stg_claims)
    union all
    select
        'voided usd',
        (select voided from m),
        (select voided from stg_claims)
    union all
    select
        'charges usd',
        (select sum(charge_usd) from {{ ref('charge_lines') }}),
        (select usd from stg_charges)
    union all
    select
        'payer paid usd',
        (select payer_paid from m),
        (select payer_paid from remit)
    union all
    select
        'contractual usd',
        (select contractual from m),
        (select contractual from remit)
    union all
    select
        'patient resp usd',
        (select patient_resp from m),
        (select patient_resp from remit)
    union all
    select
        'patient paid usd',
        (select patient_paid from m),
        (select patient_paid from remit)
    union all
    select
        'write off usd',
        (select write_off from m),
        (select write_off from remit)
    -- episodes keep the cash of claims quarantined at ingestion whose charge lines name the episode
    union all
    select
        'episode net revenue usd',
        (select sum(net_revenue_usd) from {{ ref('episodes') }}),
        (
            select sum(amount_usd) from {{ ref('int_remittances_attributed') }}
            where event_type in ('payer_payment', 'patient_payment')
                and episode_id in (select episode_id from {{ ref('episodes') }})
        )
        -- primary keys of the staging views: distinct non-null keys = rows (unique), non-null keys = rows (not null)
    {%- for cte, view in [('intake', 'stg_raw__intake_events'), ('stg_patients', 'stg_raw__patients')] %}
        union all
        select
            '{{ view }} key unique',
            (select pk_distinct from {{ cte }}),
            (select pk_rows from {{ cte }})
        union all
        select
            '{{ view }} key not null',
            (select pk_not_null from {{ cte }}),
            (select pk_rows from {{ cte }})
    {%- endfor %}
)

select * from checks
where abs(coalesce(mart_value, 0) - coalesce(raw_value, 0)) > 0.005
