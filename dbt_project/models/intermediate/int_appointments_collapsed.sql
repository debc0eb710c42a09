-- One row per appointment: the scheduling events folded into the appointment's lifecycle, book -> reschedule
-- (any number) -> outcome, in one aggregate pass. A recorded outcome (arrived / completed / cancelled /
-- late_cancelled / no_show) is final: the status and slot come from the latest outcome event (by event time;
-- on ties arrived < completed < cancel / no-show), even when a reschedule row was logged after it (schedulers
-- log the move late; it does not reopen an appointment that already had its outcome). Without an outcome the
-- appointment is 'scheduled' at the slot of its latest booked / rescheduled event. arrived / completed =
-- completed. visit_number counts completed visits within the episode in time order, whatever patient id each
-- carries (a patient re-registered mid-episode under a new id is still one episode: numbering by episode and id
-- gave two "visit 2" and stopped the build); within the patient's visits without an episode id when the format
-- carried none.
-- Incremental (macros/incremental.sql): recomputes the appointments new scheduling loads touched, widened to every
-- appointment of an episode (or, without one, of a patient's episode-less visits) they were or are in, so visit
-- numbers stay those of a full build.
-- depends_on: {{ source('raw', 'scheduling_events') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('appointments_collapsed', ['appointment_id'])[0] }}",
        "{{ scope_hooks('appointments_collapsed', ['appointment_id'])[1] }}"
    ]
) }}

with ev as (
    select
        *,
        case event_type
            when 'booked' then 1 when 'rescheduled' then 2 when 'arrived' then 3 when 'completed' then 4
            else 5
        end as type_rank
    from {{ in_scope(ref('stg_raw__scheduling_events'), {'appointment_id': 'appointment_id'}) }}
),

st as (
    select
        *,
        {{ named_struct({
            'episode_id': 'episode_id', 'referral_id': 'referral_id', 'patient_id': 'patient_id',
            'clinic_id': 'clinic_id', 'therapist_id': 'therapist_id', 'visit_type': 'visit_type',
            'scheduled_start': 'scheduled_start', 'duration_min': 'duration_min', 'event_type': 'event_type',
            'event_at': 'event_at', 'cancel_reason': 'cancel_reason', 'notice_hours': 'notice_hours'
        }) }} as state,
        {{ named_struct({'t': 'event_at', 'r': 'type_rank', 'id': 'event_id'}) }} as ord
    from ev
),

agg as (
    select
        appointment_id,
        coalesce(
            max_by(state, ord) filter (where type_rank >= 3),   -- the outcome, when one was recorded
            max_by(state, ord) filter (where type_rank <= 2)    -- else the latest booking
        ) as l,
        min(event_at) filter (where event_type = 'booked') as booked_event_at,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at,
        count(*) filter (where event_type = 'rescheduled') as reschedule_count,
        any_value(referral_id) filter (where referral_id is not null) as any_referral_id
    from st
    group by appointment_id
),

collapsed as (
    select
        agg.appointment_id,
        l.episode_id,
        coalesce(l.referral_id, agg.any_referral_id) as referral_id,
        l.patient_id,
        l.clinic_id,
        l.therapist_id,
        l.visit_type,
        coalesce(agg.booked_event_at, agg.first_event_at) as booked_at,
        l.scheduled_start,
        l.duration_min,
        case
            when l.event_type in ('booked', 'rescheduled') then 'scheduled'
            when l.event_type in ('arrived', 'completed') then 'completed'
            else l.event_type
        end as status,
        case when l.event_type in ('cancelled', 'late_cancelled', 'no_show') then l.event_at end as status_at,
        case when l.event_type in ('cancelled', 'late_cancelled') then l.cancel_reason end as cancel_reason,
        case when l.event_type in ('cancelled', 'late_cancelled') then l.notice_hours end as cancel_notice_hours,
        agg.reschedule_count,
        agg.last_event_at
    from agg
)

select
    *,
    {{ day_diff('cast(booked_at as date)', 'cast(scheduled_start as date)') }} as lead_time_days,
    case when status = 'completed' then
            row_number() over (
                partition by
                    episode_id,
                    case when episode_id is null then patient_id end,
                    status = 'completed'
                order by scheduled_start, appointment_id
            )
    end as visit_number
from collapsed
