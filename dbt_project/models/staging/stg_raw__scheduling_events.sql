-- Appointment lifecycle events from the scheduler. An appointment is booked, may be rescheduled (new
-- scheduled_start), and ends as cancelled (>= 24 h notice), late_cancelled (< 24 h), no_show, or arrived then
-- completed. Future appointments have only booked/rescheduled events.
-- Latest version per natural key (event_id), by event_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest). The events of one appointment come
-- from the one most authoritative system that has any for it (each system ids its events its own way); rename
-- and cast only.
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('scheduling_events', 'event_id', 'appointment_id') }}"
) }}

with deduped as (
    {{ merge_latest(
        'scheduling_events', [
            'event_id', 'appointment_id', 'episode_id', 'referral_id', 'patient_id', 'clinic_id',
            'therapist_id', 'event_type', 'event_at', 'scheduled_start', 'duration_min', 'visit_type',
            'cancel_reason', 'notice_hours', 'recorded_by', '_load_id', '_row_hash', '_line'
        ],
        ['event_id'],
        'event_at',
        entity='appointment_id'
    ) }}
)

select
    cast(event_id as string) as event_id,
    cast(appointment_id as string) as appointment_id,
    cast(episode_id as string) as episode_id,
    cast(referral_id as string) as referral_id,
    cast(patient_id as string) as patient_id,
    cast(clinic_id as string) as clinic_id,
    cast(therapist_id as string) as therapist_id,
    cast(event_type as string) as event_type,
    cast(event_at as timestamp) as event_at,
    cast(scheduled_start as timestamp) as scheduled_start,
    cast(duration_min as integer) as duration_min,
    cast(visit_type as string) as visit_type,
    cast(cancel_reason as string) as cancel_reason,
    cast(notice_hours as decimal(18, 2)) as notice_hours,
    cast(recorded_by as string) as recorded_by,
    _load_id,
    _row_hash,
    _line
from deduped
