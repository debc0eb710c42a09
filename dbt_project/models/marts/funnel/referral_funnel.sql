-- One row per referral or lead: a timestamp per funnel stage, the exit and its reason, the current stage,
-- durations, both conversion definitions and the owner of the next step.
-- Stages: received -> contacted -> scheduled -> evaluated -> plan_of_care -> active -> discharged.
{#- the last instant of an hour (hour_shifts) -#}
{%- set last_instant = 'local_hour + ' ~ hours_interval(1) ~ ' - interval 1 microsecond' %}
with app_actions as (
    -- logged outreach from the work queue (referral-based tasks) counts as outreach; it is a contact when a
    -- person was spoken to (seed work_queue_outcomes.counts_as_contact: reached, scheduled, declined;
    -- left_message, no_answer and wrong_number are attempts only). `confirm` actions are on appointment tasks
    -- (confirm_high_risk:<appointment_id>) of referrals that are already scheduled, hence already contacted;
    -- they show up as appointments.confirmed_at instead. The app records actions in UTC; the referral's times are
    -- its clinic's wall clock, so each action is read in the clinic's zone first (else a contact logged at 15:57 in
    -- Chicago read as 20:57 and time to first contact was 5-6 hours too long).
    select
        a.task_entity_id as referral_id,
        min(a.acted_local) filter (where a.action = 'log_outreach') as app_first_outreach_at,
        min(a.acted_local) filter (where a.action = 'log_outreach' and a.outcome in {{ app_contact_outcomes() }})
            as app_first_reached_at,
        max_by(a.lost_reason, a.acted_local) filter (where a.action = 'mark_lost') as app_lost_reason,
        max(a.acted_local) filter (where a.action = 'mark_lost') as app_lost_at
    from (
        select
            x.*,
            {{ utc_to_local('x.acted_at', 'c.timezone') }} as acted_local,
            -- a mark_lost reason is one of the Work queue's (app/lib/actions.py LOST_REASONS): anything else written
            -- into the log is 'other', never the text (exit_reason reaches marketing and the de-identified twin)
            case
                when nullif(trim(x.reason), '') is null then null
                when x.reason in (
                        'Chose another provider', 'Insurance / cost', 'No longer needs therapy',
                        'Unreachable after attempts', 'Physician cancelled referral', 'Moved away', 'Other'
                    ) then x.reason
                else 'other'
            end as lost_reason
        from {{ ref('stg_app__actions') }} as x
        left join {{ ref('int_referrals_pivoted') }} as r on x.task_entity_id = r.referral_id
        left join {{ ref('stg_raw__clinics') }} as c on r.clinic_id = c.clinic_id
        where x.task_rule in ('uncontacted_referral', 'contacted_unscheduled', 'eval_no_show_rebook')
    ) as a
    group by 1
),

ref_appts as (
    select
        referral_id,
        min(booked_at) as scheduled_at,
        max(booked_at) as last_booked_at,
        min(scheduled_start) filter (where status = 'completed' and visit_type = 'initial_eval') as eval_visit_at,
        min(scheduled_start) filter (where status = 'completed') as first_visit_at,
        max(scheduled_start) filter (where status = 'no_show' and visit_type = 'initial_eval') as eval_no_show_at,
        max_by(status, scheduled_start) filter (where visit_type = 'initial_eval') as last_eval_status,
        count(*) filter (where is_future and visit_type = 'initial_eval') as future_evals
    from {{ ref('appointments') }}
    where referral_id is not null
    group by referral_id
),

-- A secondary referral (int_referrals_pivoted: another referral owns its episode) takes nothing from the
-- episode: no evaluation but its own initial evaluation visit, no plan, treatment, discharge or signed evaluation
-- (conversion), no first visit (7-day conversion). The episode's journey and money are its owner's, counted once.
base as (
    select
        r.*,
        ra.scheduled_at,
        case when not r.is_secondary_referral then ra.first_visit_at end as first_visit_at,
        ra.eval_no_show_at,
        ra.last_eval_status,
        coalesce(ra.future_evals, 0) as future_evals,
        e.status as episode_status,
        e.discharged_at as episode_discharged_at,
        e.discharge_reason,
        n.eval_note_signed_at,
        n.planned_visits,
        coalesce(
            ra.eval_visit_at,
            case when not r.is_secondary_referral then ra.first_visit_at end,
            cast(n.eval_date as timestamp)
        ) as evaluated_at,
        -- the plan of care is set at the evaluation and written in its note: the stage time is when the note was
        -- written, not when it was signed (signatures lag; a note signed days late, after the second visit or
        -- the discharge, put plan_of_care after active/discharged). Treating the patient under the plan (the
        -- second visit) or discharging them means a plan existed by then, so a note written even later does
        -- not move the stage past them. The signature is the WebPT conversion (converted_webpt). So a second
        -- visit or a discharge sets the stage even when the evaluation note is missing (quarantined, not yet
        -- exported); least() skips nulls.
        least(
            case when n.planned_visits is not null then coalesce(n.eval_note_created_at, n.eval_note_signed_at) end,
            v2.scheduled_start,
            case when e.status = 'discharged' then e.discharged_at end
        ) as plan_of_care_at,
        v2.scheduled_start as active_at,
        least(r.first_outreach_at, r.contacted_event_at, aa.app_first_outreach_at) as first_contact_at,
        least(r.contacted_event_at, r.first_reached_at, aa.app_first_reached_at) as contacted_at_raw,
        -- a work-queue `mark_lost` is superseded by a later booking, as an intake exit is (int_referrals_pivoted)
        case when ra.last_booked_at is null or ra.last_booked_at <= aa.app_lost_at then aa.app_lost_reason end
            as app_lost_reason,
        case when ra.last_booked_at is null or ra.last_booked_at <= aa.app_lost_at then aa.app_lost_at end
            as app_lost_at
    from {{ ref('int_referrals_pivoted') }} as r
    left join ref_appts as ra using (referral_id)
    left join {{ ref('episodes') }} as e on r.episode_id = e.episode_id and not r.is_secondary_referral
    left join {{ ref('int_notes_summarised') }} as n on r.episode_id = n.episode_id and not r.is_secondary_referral
    left join {{ ref('appointments') }} as v2
        on r.episode_id = v2.episode_id and v2.visit_number = 2 and not r.is_secondary_referral
    left join app_actions as aa using (referral_id)
),

staged as (
    select
        *,
        -- a referral that was scheduled was reached by the booking time at the latest, even if the EMR never
        -- recorded the call or logged it only after the booking (patient called in and booked, outreach noted later)
        case
            when scheduled_at is null then contacted_at_raw
            else least(coalesce(contacted_at_raw, first_contact_at, scheduled_at), scheduled_at)
        end as contacted_at,
        case when episode_status = 'discharged' then episode_discharged_at end as discharged_at,
        -- exits: the earliest wins. A missed evaluation (no evaluation attended, none booked ahead) is the exit
        -- unless an intake exit was recorded before it: the EMR's later `lost` (reason eval_no_show), or a
        -- decline on the rebooking call, is the consequence of the no-show, not a different exit. An exit followed
        -- by a booking is no exit (int_referrals_pivoted drops it, app_lost_at above): the referral is scheduled
        -- again, and that booking's cancellation or no-show is judged as any other.
        case
            -- the LATEST evaluation appointment must be the no-show: a no-show rebooked and then late-cancelled is
            -- a cancellation, an eval_no_show exit only when the intake team says so (next rule)
            when evaluated_at is null and last_eval_status = 'no_show' and future_evals = 0
                and (intake_exit_at is null or intake_exit_at >= eval_no_show_at) then 'eval_no_show'
            -- the front desk's own word: an intake `lost` whose reason is eval_no_show is that exit (the missed
            -- evaluation may have been a cancellation never rebooked rather than a recorded no-show)
            when evaluated_at is null and intake_exit_stage = 'lost' and intake_exit_reason = 'eval_no_show'
                then 'eval_no_show'
            when evaluated_at is null and intake_exit_stage is not null then intake_exit_stage
            when evaluated_at is null and app_lost_at is not null then 'lost'
            when episode_status = 'self_discharged' then 'self_discharged'
        end as exit_stage
    from base
),

-- The hours_to_* below read both times in the clinic's zone as UTC instants (local_to_utc). Instead of projecting
-- every time (several ICU calls each; this model 4.8-4.9 -> 4.2-4.8 s at 200 clinics, docs/scale.md), each local
-- hour of each clinic zone is projected once, from the first referral (at most ten years back) to a day past the
-- build's "now". Where an hour's first and last instants shift alike, so does every time in it (a zone changes its
-- offset at most once an hour); an hour with a change in it (a zone that shifts at :30) has no shift, and its times,
-- like any time outside these hours, are projected one by one (shifted_to_utc). Built from the clinics and the clock,
-- not from `staged`: a second reader of that CTE would make DuckDB materialise it, every column of every referral.
zone_hours as (
    select
        z.timezone,
        cast(d.local_day as timestamp) + {{ hours_interval('h.h') }} as local_hour
    from (
        select distinct timezone
        from {{ ref('stg_raw__clinics') }}
        where timezone is not null
    ) as z
    cross join (
        select
            {{ day_series(
                "(select greatest(min(cast(r.received_at as date)), cast(max(k.as_of) - " ~ days_interval(3653)
                ~ " as date)) from " ~ ref('int_referrals_pivoted') ~ " as r, " ~ ref('int_clocks_resolved') ~ " as k)",
                "(select cast(as_of as date) + 1 from " ~ ref('int_clocks_resolved') ~ ")"
            ) }} as local_day
    ) as d
    cross join (
        {%- for h in range(24) %}
            {% if not loop.first %}union all{% endif %}
            select {{ h }} as h
        {%- endfor %}
    ) as h
),

hour_shifts as (
    select
        timezone,
        local_hour,
        {{ local_to_utc('local_hour', 'timezone') }} - local_hour as shift
    from zone_hours
    where
        {{ local_to_utc('local_hour', 'timezone') }} - local_hour
        = {{ local_to_utc(last_instant, 'timezone') }} - ({{ last_instant }})
),

staged_utc as (
    select
        s.*,
        {{ shifted_to_utc('s.received_at', 'h_rec.shift', 'z.timezone') }} as received_utc,
        {{ shifted_to_utc('s.first_contact_at', 'h_con.shift', 'z.timezone') }} as first_contact_utc,
        {{ shifted_to_utc('s.scheduled_at', 'h_sch.shift', 'z.timezone') }} as scheduled_utc,
        {{ shifted_to_utc('s.evaluated_at', 'h_eva.shift', 'z.timezone') }} as evaluated_utc
    from staged as s
    left join {{ ref('stg_raw__clinics') }} as z on s.clinic_id = z.clinic_id
    left join hour_shifts as h_rec
        on z.timezone = h_rec.timezone and date_trunc('hour', s.received_at) = h_rec.local_hour
    left join hour_shifts as h_con
        on z.timezone = h_con.timezone and date_trunc('hour', s.first_contact_at) = h_con.local_hour
    left join hour_shifts as h_sch
        on z.timezone = h_sch.timezone and date_trunc('hour', s.scheduled_at) = h_sch.local_hour
    left join hour_shifts as h_eva
        on z.timezone = h_eva.timezone and date_trunc('hour', s.evaluated_at) = h_eva.local_hour
)

select
    s.referral_id,
    s.patient_id,
    {{ patient_key('s.patient_id') }} as patient_key,
    s.clinic_id,
    s.intake_kind,
    s.source_type,
    s.referring_physician_id,
    s.channel,
    case s.source_type
        when 'physician' then 'physician_referral'
        when 'direct_access' then 'direct_access'
        else s.channel
    end as source_channel,
    s.payer_id,
    p.payer_class,
    s.icd10_code,
    s.received_at,
    s.first_contact_at,
    s.contacted_at,
    s.scheduled_at,
    s.evaluated_at,
    s.plan_of_care_at,
    s.active_at,
    s.discharged_at,
    s.exit_stage,
    -- no exit, no exit reason or time: an intake exit the evaluation overrode (declined, then evaluated) is history.
    -- Always a category (int_referrals_pivoted codes the intake's free text, lost_reason above the work queue's),
    -- never text someone typed: marketing and the de-identified twin read this column (_funnel.yml accepted_values)
    case
        when s.exit_stage is null then null
        when s.exit_stage = 'eval_no_show' then 'no_show_at_evaluation'
        when s.exit_stage = 'self_discharged' then coalesce(s.discharge_reason, 'no_visit_30_days')
        when s.exit_stage = 'lost' then coalesce(s.intake_exit_reason, s.app_lost_reason)
        else s.intake_exit_reason
    end as exit_reason,
    case
        when s.exit_stage is null then null
        when s.exit_stage = 'eval_no_show' then coalesce(s.eval_no_show_at, s.intake_exit_at)
        when s.exit_stage = 'self_discharged' then s.episode_discharged_at
        when s.exit_stage = 'lost' then coalesce(s.intake_exit_at, s.app_lost_at)
        else s.intake_exit_at
    end as exit_at,
    coalesce(
        s.exit_stage,
        case
            when s.discharged_at is not null then 'discharged'
            when s.active_at is not null then 'active'
            when s.plan_of_care_at is not null then 'plan_of_care'
            when s.evaluated_at is not null then 'evaluated'
            when s.scheduled_at is not null then 'scheduled'
            when s.contacted_at is not null then 'contacted'
            else 'received'
        end
    ) as current_stage,
    s.outreach_attempts,
    -- elapsed hours: both wall-clock times read in the clinic's zone (a contact across a DST change is 11 h, not 12)
    {{ seconds_between('s.received_utc', 's.first_contact_utc') }} / 3600.0 as hours_to_contact,
    {{ seconds_between('s.received_utc', 's.scheduled_utc') }} / 3600.0 as hours_to_schedule,
    {{ seconds_between('s.received_utc', 's.evaluated_utc') }} / 3600.0 as hours_to_eval,
    {{ business_days('s.received_at', 's.scheduled_at') }} as business_days_to_schedule,
    {{ business_days('s.received_at', 's.evaluated_at') }} as business_days_to_eval,
    {{ day_diff('cast(s.evaluated_at as date)', 'cast(s.discharged_at as date)') }} as days_eval_to_discharge,
    s.evaluated_at is not null as is_evaluated,
    s.eval_note_signed_at is not null as converted_webpt,
    -- open: not converted, not exited, not discharged (the KPIs' pending count and the pages' open referrals); a
    -- secondary referral can never convert (its episode's conversion is its owner's), so it is never open
    s.eval_note_signed_at is null and s.exit_stage is null and s.discharged_at is null
    and not s.is_secondary_referral as is_open,
    coalesce({{ day_diff('cast(s.received_at as date)', 'cast(s.first_visit_at as date)') }} <= 7, false)
        as converted_7day,
    s.episode_id,
    s.is_secondary_referral,
    case
        -- the episode's next step is its owner's
        when s.is_secondary_referral then null
        when s.exit_stage = 'eval_no_show' then 'front_desk'
        when s.exit_stage is not null or s.discharged_at is not null then null
        when s.active_at is not null then 'therapist'
        when s.plan_of_care_at is not null then 'front_desk'
        when s.evaluated_at is not null then 'therapist'
        -- an evaluation still ahead is the therapist's; a booking with nothing ahead (cancelled, nothing rebooked,
        -- or passed with no outcome recorded) is the front desk's to rebook or close
        when s.scheduled_at is not null and s.future_evals > 0 then 'therapist'
        when s.contacted_at is not null then 'front_desk'
        else 'intake'
    end as next_step_owner
from staged_utc as s
left join {{ ref('stg_raw__payers') }} as p using (payer_id)
