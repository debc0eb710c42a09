-- One row per claim: the claim header, its remittance events summed by kind, and its charge lines summed; episode
-- and appointment as carried, else as linked (int_visit_links: the appointment its lines link to, else patient +
-- date); clinic and payer as our ids when an 837P named them by NPI / X12 payer id (int_clinic_crosswalk,
-- int_payer_crosswalk).
-- Balances follow the remittances contract: insurance balance = billed - payer payments - contractual
-- adjustments - patient responsibility - write-offs; patient balance = patient responsibility - patient payments.
-- A later payer's 835 (secondary, tertiary) restates the patient responsibility the earlier payer left (ingestion
-- x12.py _prior_share), so the sum is the last payer's.
-- Denied: a claim denied again (an appeal denied, a resubmission denied) is one denied claim; its denied amount
-- is the largest amount any of its denials stated, capped at billed (a denial moves no money: summing them
-- counted the claim's billed once per denial).
-- Voided: a claim whose latest version is a void (stg_raw__claims.status: an 837P void, a FHIR Claim cancelled or
-- entered-in-error) keeps its row, billed 0 with what it had billed in voided_usd (billed_usd + voided_usd is the
-- billed of staging, money never vanishes), not denied (no denial to work: the claim was withdrawn). Its remittances
-- still count (a payment the payer then recoups nets to 0; one it does not is a credit to refund, left open). A
-- later version (837P replacement, FHIR Claim re-sent) re-bills it.
-- Incremental (macros/incremental.sql, claims_reconciled_scope): recomputes the claims whose header, links,
-- remittances or charge lines were recomputed upstream, summing only their rows.
-- depends_on: {{ source('raw', 'clinics') }} {{ source('raw', 'payers') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('claims_reconciled', ['claim_id'])[0] }}",
        "{{ scope_hooks('claims_reconciled', ['claim_id'])[1] }}"
    ]
) }}

-- Shape: the claim header, its remittance events and its charge lines are stacked (union all) and grouped by claim
-- once, then joined to the claim's link and the crosswalks. Joining two per-claim aggregates and the links to the
-- headers held three 20 M-row hash tables at once and ran a 900-clinic build out of memory under the 4 GB budget;
-- the grouping spills to disk, and one big join (to the links) is left (docs/scale.md).
with claim_parts as (
    select
        claim_id,
        'claim' as part,
        patient_id,
        clinic_id,
        payer_id,
        service_date,
        submitted_at,
        status,
        billed_usd,
        cast(null as string) as event_type,
        cast(null as decimal(18, 2)) as amount_usd,
        cast(null as string) as carc_code,
        cast(null as timestamp) as event_at,
        cast(null as decimal(18, 2)) as charge_usd,
        cast(null as int) as units,
        cast(null as boolean) as is_excluded_from_units
    from {{ in_scope(ref('stg_raw__claims'), {'claim_id': 'claim_id'}) }}
    union all
    select
        claim_id,
        'remittance' as part,
        null as patient_id,
        null as clinic_id,
        null as payer_id,
        null as service_date,
        null as submitted_at,
        null as status,
        null as billed_usd,
        event_type,
        amount_usd,
        carc_code,
        event_at,
        null as charge_usd,
        null as units,
        null as is_excluded_from_units
    from {{ in_scope(ref('int_remittances_linked'), {'claim_id': 'claim_id'}) }}
    union all
    select
        claim_id,
        'charge_line' as part,
        null as patient_id,
        null as clinic_id,
        null as payer_id,
        null as service_date,
        null as submitted_at,
        null as status,
        null as billed_usd,
        null as event_type,
        null as amount_usd,
        null as carc_code,
        null as event_at,
        charge_usd,
        units,
        is_excluded_from_units
    from {{ in_scope(ref('int_charge_lines_classified'), {'claim_id': 'claim_id'}) }}
),

claims as (
    select
        claim_id,
        -- the header's own columns: one header row per claim (stg_raw__claims: claim_id is unique)
        max(patient_id) as patient_id,
        max(clinic_id) as clinic_id,
        max(payer_id) as payer_id,
        max(service_date) as service_date,
        max(submitted_at) as submitted_at,
        max(status) as status,
        max(billed_usd) as billed_usd,
        count(*) filter (where part = 'claim') as header_rows,
        sum(amount_usd) filter (where event_type = 'payer_payment') as payer_paid_usd,
        sum(amount_usd) filter (where event_type = 'contractual_adjustment') as contractual_adj_usd,
        sum(amount_usd) filter (where event_type = 'patient_responsibility') as patient_resp_usd,
        sum(amount_usd) filter (where event_type = 'patient_payment') as patient_paid_usd,
        sum(amount_usd) filter (where event_type = 'write_off') as write_off_usd,
        max(amount_usd) filter (where event_type = 'denial') as denied_usd,
        count(*) filter (where event_type = 'denial') > 0 as is_denied,
        -- the first denial's reason; two CARCs of one denial share its time: the lower code, the same every build
        min_by(carc_code, {{ named_struct({'at': 'event_at', 'carc': 'carc_code'}) }})
        filter (where event_type = 'denial' and event_at is not null) as denial_carc,
        min(event_at) filter (where event_type = 'denial') as denied_at,
        min(event_at) filter (where event_type = 'payer_payment') as first_payer_payment_at,
        max(event_at) as last_remit_at,
        count(*) filter (where part = 'remittance') as remit_events,
        count(*) filter (where part = 'charge_line') as charge_lines,
        sum(charge_usd) as charge_lines_usd,
        sum(units) filter (where not is_excluded_from_units) as billable_units
    from claim_parts
    group by claim_id
)

select
    c.claim_id,
    k.episode_id,
    c.patient_id,
    coalesce(xc.clinic_id, c.clinic_id) as clinic_id,
    coalesce(xp.payer_id, c.payer_id) as payer_id,
    c.service_date,
    c.submitted_at,
    k.appointment_id,
    k.appointment_link,
    k.episode_link,
    k.unlinked_reason,
    c.status as claim_status,
    case when c.status = 'voided' then cast(0 as decimal(18, 2)) else c.billed_usd end as billed_usd,
    case when c.status = 'voided' then c.billed_usd else cast(0 as decimal(18, 2)) end as voided_usd,
    coalesce(c.payer_paid_usd, 0) as payer_paid_usd,
    coalesce(c.contractual_adj_usd, 0) as contractual_adj_usd,
    coalesce(c.patient_resp_usd, 0) as patient_resp_usd,
    coalesce(c.patient_paid_usd, 0) as patient_paid_usd,
    coalesce(c.write_off_usd, 0) as write_off_usd,
    -- least() skips a null (DuckDB and Spark alike): no denial is 0, not billed
    case when c.denied_usd is null or c.status = 'voided' then 0 else least(c.denied_usd, c.billed_usd) end
        as denied_usd,
    c.is_denied and c.status <> 'voided' as is_denied,
    c.denial_carc,
    c.denied_at,
    c.first_payer_payment_at,
    c.last_remit_at,
    c.remit_events,
    c.charge_lines,
    coalesce(c.charge_lines_usd, 0) as charge_lines_usd,
    coalesce(c.billable_units, 0) as billable_units
from claims as c
left join {{ ref('int_visit_links') }} as k on k.source = 'claims' and c.claim_id = k.row_id
left join {{ ref('int_clinic_crosswalk') }} as xc on c.clinic_id = xc.source_id
left join {{ ref('int_payer_crosswalk') }} as xp on c.payer_id = xp.source_id
where c.header_rows > 0
