-- One row per appointment with its current status; is_future = still scheduled and starting after as_of;
-- confirmed_at = the latest work-queue confirm (app action) on the appointment.
-- Incremental (macros/incremental.sql, appointments_scope): what int_appointments_collapsed recomputed, the rows
-- still scheduled (as_of moves them) and the confirmed ones.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('appointments', ['appointment_id'])[0] }}",
        "{{ scope_hooks('appointments', ['appointment_id'])[1] }}"
    ]
) }}
with confirms as (
    select
        appointment_id,
        max(acted_at) as confirmed_at_utc
    from {{ ref('stg_app__actions') }}
    where action = 'confirm' and appointment_id is not null
    group by appointment_id
)

select
    a.appointment_id,
    a.episode_id,
    a.referral_id,
    a.patient_id,
    {{ patient_key('a.patient_id') }} as patient_key,
    a.clinic_id,
    a.therapist_id,
    a.visit_type,
    a.booked_at,
    a.scheduled_start,
    a.duration_min,
    a.status,
    a.status_at,
    a.cancel_reason,
    a.cancel_notice_hours,
    a.lead_time_days,
    a.reschedule_count,
    a.visit_number,
    a.status = 'scheduled' and a.scheduled_start > c.as_of as is_future,
    a.status = 'scheduled' and a.scheduled_start <= c.as_of as is_unresolved,
    -- the app records actions in UTC; the appointment's times are its clinic's wall clock (referral_funnel)
    {{ utc_to_local('cf.confirmed_at_utc', 'z.timezone') }} as confirmed_at
from {{ in_scope(ref('int_appointments_collapsed'), {'appointment_id': 'appointment_id'}) }} as a
cross join {{ ref('int_clocks_resolved') }} as c
left join confirms as cf using (appointment_id)
left join {{ ref('stg_raw__clinics') }} as z on a.clinic_id = z.clinic_id
