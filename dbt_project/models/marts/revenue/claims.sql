-- One row per claim: billed, allowed, paid, adjustments, patient responsibility, write-offs, open balances,
-- denial with its CARC, days to pay and the A/R age bucket at as_of. A voided claim (claim_status voided: its latest
-- version is a void) keeps its row with billed 0 and its billed in voided_usd, not denied, and closed unless a
-- remittance left money on it (int_claims_reconciled).
-- Incremental (macros/incremental.sql, claims_scope): what int_claims_reconciled recomputed and the open claims
-- whose age bucket moves at tonight's as_of.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('claims', ['claim_id'])[0] }}",
        "{{ scope_hooks('claims', ['claim_id'])[1] }}"
    ]
) }}
select
    c.claim_id,
    c.episode_id,
    c.appointment_id,
    c.patient_id,
    {{ patient_key('c.patient_id') }} as patient_key,
    c.clinic_id,
    c.payer_id,
    p.payer_class,
    c.service_date,
    c.submitted_at,
    c.claim_status,
    c.billed_usd,
    c.voided_usd,
    c.billed_usd - c.contractual_adj_usd as allowed_usd,
    c.payer_paid_usd,
    c.contractual_adj_usd,
    c.patient_resp_usd,
    c.patient_paid_usd,
    c.write_off_usd,
    c.billed_usd - c.payer_paid_usd - c.contractual_adj_usd - c.patient_resp_usd - c.write_off_usd
        as insurance_balance_usd,
    c.patient_resp_usd - c.patient_paid_usd as patient_balance_usd,
    c.payer_paid_usd + c.patient_paid_usd as net_collected_usd,
    c.is_denied,
    c.denial_carc,
    c.denied_usd,
    c.denied_at,
    -- adjudicated: a payer has answered (a denial, a payment or a contractual adjustment); the denial rate
    -- counts only these, so claims still waiting for a payer do not read as 'not denied'. A self-pay claim (its
    -- discount is the practice's own contractual adjustment) and a claim with no payer are never answered by one;
    -- nor is a voided claim (withdrawn from the payer: out of the denial rate's cohort, and no claim left to work)
    {{ is_payer_claim('c.payer_id', 'p.payer_class') }}
    and c.claim_status <> 'voided'
    and (c.is_denied or c.first_payer_payment_at is not null or c.contractual_adj_usd <> 0) as is_adjudicated,
    c.is_denied and c.payer_paid_usd = 0 and c.write_off_usd > 0 as is_denial_written_off,
    {{ day_diff('cast(c.submitted_at as date)', 'cast(c.first_payer_payment_at as date)') }} as days_to_pay,
    case
        when abs(c.billed_usd - c.payer_paid_usd - c.contractual_adj_usd - c.write_off_usd - c.patient_paid_usd) < 0.005
            then 'closed'
        else {{ open_ar_age_bucket('c.service_date', 'k.as_of') }}
    end as ar_age_bucket,
    c.charge_lines,
    c.charge_lines_usd,
    c.billable_units
from {{ in_scope(ref('int_claims_reconciled'), {'claim_id': 'claim_id'}) }} as c
left join {{ ref('stg_raw__payers') }} as p using (payer_id)
cross join {{ ref('int_clocks_resolved') }} as k
