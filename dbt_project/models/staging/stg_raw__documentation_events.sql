-- Clinical documentation from the EMR: initial evaluation with the plan of care, daily notes, progress notes (by
-- the 10th visit), re-evaluations and the discharge summary, with diagnoses and functional outcome scores (LEFS,
-- ODI, NDI, QuickDASH) at evaluation and discharge. An amended note is re-sent with the same note_id and a later
-- created_at.
-- Latest version per natural key (note_id), by created_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('documentation_events', 'note_id') }}"
) }}

with deduped as (
    {{ merge_latest(
        'documentation_events', [
            'note_id', 'episode_id', 'appointment_id', 'patient_id', 'clinic_id', 'therapist_id', 'note_type',
            'service_date', 'created_at', 'signed_at', 'visit_number', 'icd10_primary', 'icd10_secondary',
            'body_region', 'planned_visits', 'frequency_per_week', 'plan_weeks', 'outcome_measure',
            'outcome_score', 'discharge_reason', '_load_id', '_row_hash', '_line'
        ],
        ['note_id'],
        'created_at'
    ) }}
)

select
    cast(note_id as string) as note_id,
    cast(episode_id as string) as episode_id,
    cast(appointment_id as string) as appointment_id,
    cast(patient_id as string) as patient_id,
    cast(clinic_id as string) as clinic_id,
    cast(therapist_id as string) as therapist_id,
    cast(note_type as string) as note_type,
    cast(service_date as date) as service_date,
    cast(created_at as timestamp) as created_at,
    cast(signed_at as timestamp) as signed_at,
    cast(visit_number as integer) as visit_number,
    cast(icd10_primary as string) as icd10_primary,
    cast(icd10_secondary as string) as icd10_secondary,
    cast(body_region as string) as body_region,
    cast(planned_visits as integer) as planned_visits,
    cast(frequency_per_week as integer) as frequency_per_week,
    cast(plan_weeks as integer) as plan_weeks,
    cast(outcome_measure as string) as outcome_measure,
    cast(outcome_score as decimal(18, 2)) as outcome_score,
    cast(discharge_reason as string) as discharge_reason,
    _load_id,
    _row_hash,
    _line
from deduped
