-- One row per attended visit (completed appointment) with its billed units, charges and collections.
-- Incremental (macros/incremental.sql, visits_scope): the appointments whose row, lines or claims changed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('visits', ['appointment_id'])[0] }}",
        "{{ scope_hooks('visits', ['appointment_id'])[1] }}"
    ]
) }}
with lines as (
    select
        appointment_id,
        count(*) as charge_lines,
        sum(units) filter (where not is_excluded_from_units) as billable_units,
        sum(charge_usd) as charges_usd
    from {{ in_scope(ref('int_charge_lines_classified'), {'appointment_id': 'appointment_id'}) }} as c
    group by appointment_id
),

money as (
    select
        appointment_id,
        sum(payer_paid_usd + patient_paid_usd) as net_collected_usd
    from {{ in_scope(ref('int_claims_reconciled'), {'appointment_id': 'appointment_id'}) }} as r
    where appointment_id is not null
    group by appointment_id
)

select
    a.appointment_id,
    a.episode_id,
    a.referral_id,
    a.patient_key,
    a.clinic_id,
    a.therapist_id,
    a.visit_type,
    a.scheduled_start,
    cast(a.scheduled_start as date) as visit_date,
    a.duration_min,
    a.visit_number,
    coalesce(l.charge_lines, 0) as charge_lines,
    coalesce(l.billable_units, 0) as billable_units,
    coalesce(l.charges_usd, 0) as charges_usd,
    coalesce(m.net_collected_usd, 0) as net_collected_usd
from {{ in_scope(ref('appointments'), {'appointment_id': 'appointment_id'}) }} as a
left join lines as l using (appointment_id)
left join money as m using (appointment_id)
where a.status = 'completed'
