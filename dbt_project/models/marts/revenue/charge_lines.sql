-- One row per charge line (CPT/HCPCS code on a visit) with units, minutes, modifiers and dollars; its visit and
-- episode as the export carried them or as the linking rule found them (appointment_link, episode_link).
-- Incremental (macros/incremental.sql, charge_lines_scope): the lines int_charge_lines_classified recomputed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('charge_lines', ['charge_id'])[0] }}",
        "{{ scope_hooks('charge_lines', ['charge_id'])[1] }}"
    ]
) }}
select
    charge_id,
    claim_id,
    appointment_id,
    episode_id,
    {{ patient_key('patient_id') }} as patient_key,
    clinic_id,
    therapist_id,
    service_date,
    cpt_code,
    modifiers,
    coalesce(modifiers, '') like '%KX%' as has_kx_modifier,
    units,
    minutes,
    is_timed,
    is_excluded_from_units,
    charge_usd,
    posted_at,
    appointment_link,
    episode_link
from {{ in_scope(ref('int_charge_lines_classified'), {'charge_id': 'charge_id'}) }} as c
