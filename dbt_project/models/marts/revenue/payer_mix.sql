-- One row per clinic x month x payer class: attended visits (by visit date, payer class of the visit's
-- episode) and collections (payer + patient payments by the month they were posted, cash basis like the
-- net revenue KPIs, payer class of the claim, else of the remittance's payer). Every attended visit and
-- every landed payment is in exactly one row: no episode payer or no claim payer -> payer class 'unknown';
-- a payment whose claim and charge lines were both quarantined -> clinic 'unattributed'. Cash is cut at as_of's
-- date like the KPIs' (kpi_facts_daily): a payment dated after the build's "now" (int_clocks_resolved: only one dated
-- after the file that brought it was loaded) counts in both once as_of reaches its date, never in one alone.
with k as (
    select as_of from {{ ref('int_clocks_resolved') }}
),

visit_rows as (
    select
        v.clinic_id,
        cast(date_trunc('month', v.visit_date) as date) as month,
        coalesce(e.payer_class, 'unknown') as payer_class,
        count(*) as visits
    from {{ ref('visits') }} as v
    cross join k
    left join {{ ref('episodes') }} as e using (episode_id)
    where v.scheduled_start <= k.as_of
    group by all
),

cash_rows as (
    select
        r.clinic_id,
        cast(date_trunc('month', r.event_at) as date) as month,
        coalesce(p.payer_class, 'unknown') as payer_class,
        sum(r.amount_usd) as collected_usd,
        sum(r.amount_usd) filter (where r.event_type = 'payer_payment') as payer_paid_usd,
        sum(r.amount_usd) filter (where r.event_type = 'patient_payment') as patient_paid_usd
    from {{ ref('int_remittances_attributed') }} as r
    cross join k
    left join {{ ref('int_claims_reconciled') }} as c using (claim_id)
    left join {{ ref('stg_raw__payers') }} as p on p.payer_id = coalesce(c.payer_id, r.payer_id)
    where r.event_type in ('payer_payment', 'patient_payment') and cast(r.event_at as date) <= cast(k.as_of as date)
    group by all
)

select
    clinic_id,
    month,
    payer_class,
    coalesce(v.visits, 0) as visits,
    cast(coalesce(m.collected_usd, 0) as double) as collected_usd,
    cast(coalesce(m.payer_paid_usd, 0) as double) as payer_paid_usd,
    cast(coalesce(m.patient_paid_usd, 0) as double) as patient_paid_usd
from visit_rows as v
full outer join cash_rows as m using (clinic_id, month, payer_class)
where month is not null
