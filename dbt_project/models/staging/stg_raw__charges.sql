-- Charge lines posted per visit, one per CPT/HCPCS code, with units from timed minutes (Medicare 8-minute rule)
-- and modifiers.
-- Latest version per natural key (charge_id), by posted_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only. A line of an
-- 837P or FHIR claim counts only while that system's latest version of its claim carries it (a replacement claim
-- that drops a line drops it: current_claim_lines, macros/ptpulse.sql).
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched, and every line of a claim
-- re-sent with its lines; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('charges', 'charge_id', claim_lines=true) }}"
) }}

with deduped as (
    {{ merge_latest(
        'charges', [
            'charge_id', 'claim_id', 'appointment_id', 'episode_id', 'patient_id', 'clinic_id', 'therapist_id',
            'service_date', 'cpt_code', 'modifiers', 'units', 'minutes', 'charge_usd', 'posted_at', '_load_id',
            '_row_hash', '_line'
        ],
        ['charge_id'],
        'posted_at',
        claim_lines=true
    ) }}
)

select
    cast(charge_id as string) as charge_id,
    cast(claim_id as string) as claim_id,
    cast(appointment_id as string) as appointment_id,
    cast(episode_id as string) as episode_id,
    cast(patient_id as string) as patient_id,
    cast(clinic_id as string) as clinic_id,
    cast(therapist_id as string) as therapist_id,
    cast(service_date as date) as service_date,
    cast(cpt_code as string) as cpt_code,
    cast(modifiers as string) as modifiers,
    cast(units as integer) as units,
    cast(minutes as integer) as minutes,
    cast(charge_usd as decimal(18, 2)) as charge_usd,
    cast(posted_at as timestamp) as posted_at,
    _load_id,
    _row_hash,
    _line
from deduped
