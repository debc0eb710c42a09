-- One row per referral (or lead): the intake events pivoted into the received attributes, first outreach,
-- first contact and the intake exit, plus the episode its appointments belong to and whether it owns that episode.
-- Funnel logic on top of this lives in marts/referral_funnel.
-- The intake exit is the latest declined / unreachable / insurance_denied / lost event, unless an appointment of the
-- referral was booked after it (docs/architecture.md "The funnel's exits"): the patient came back, so the exit is
-- superseded and the referral follows its appointments again (a booking later cancelled or missed is judged as any
-- cancelled or missed evaluation, not as the old exit); an exit recorded after that booking counts again.
-- One episode, one owning referral (docs/architecture.md "One episode, one owning referral"): a patient's follow-up
-- visit can carry a second referral (a renewed prescription, a second physician), so several referrals may name one
-- episode. Its owner is the referral of its attended initial evaluation (the earliest), else of its earliest
-- initial-evaluation appointment of any status, else the earliest received (then the lowest id). Every other
-- referral of the episode is secondary: it gets no conversion and none of the episode's revenue or later stages, and
-- is evaluated only by an initial evaluation of its own, so an episode's money and conversion are counted once.
-- the intake events are read from their staged table by each CTE below, never through one shared CTE: DuckDB
-- materialises a CTE read three times, which copied all 16.8 M events with every column at 900 clinics (15 s a night)
with received as (
    select *
    from {{ ref('stg_raw__intake_events') }}
    where event_type = 'received'
    qualify row_number() over (partition by referral_id order by event_at, event_id) = 1
),

agg as (
    select
        referral_id,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at,
        min(event_at) filter (where event_type = 'outreach') as first_outreach_at,
        min(event_at) filter (where event_type = 'outreach' and outreach_outcome = 'reached') as first_reached_at,
        min(event_at) filter (where event_type = 'contacted') as contacted_event_at,
        count(*) filter (where event_type = 'outreach') as outreach_attempts,
        -- for a referral with no `received` event: the lowest id, not any_value (the staged table's row order
        -- depends on how many incremental nights wrote it, so any_value could differ from a full rebuild)
        min(patient_id) as any_patient_id,
        min(clinic_id) as any_clinic_id
    from {{ ref('stg_raw__intake_events') }}
    group by referral_id
),

-- The intake exit's reason as a category, never as typed: the export's `reason` is free text (the contract has no
-- accepted list) and a front desk may write "Mrs Haynes DOB 07/06/1939 moved to Tucson" in it, while the funnel's
-- exit_reason is shown to marketing and copied into the de-identified twin (docs/architecture.md "The funnel's
-- exits"). The categories are the reason codes the generator and the documented exports send (seed_data/intake.py
-- DECLINE_REASONS, DENY_REASONS, LOST_REASONS and the `lost` eval_no_show), compared after lower case with every
-- run of other characters read as one underscore ("Went elsewhere" is went_elsewhere); any other text is 'other'.
-- The typed text stays in raw and staging only: no mart, page or role needs it.
exits as (
    select
        referral_id,
        event_type as intake_exit_stage,
        case
            when nullif(trim(reason), '') is null then null
            when reason_key in (
                    -- exit reason categories (tests/dbt/test_exit_reason_categories.py reads this list)
                    'cost', 'no_time', 'went_elsewhere', 'symptoms_resolved', 'prefers_home_program',
                    'not_covered', 'out_of_network', 'auth_denied', 'no_benefits_left',
                    'no_response_after_contact', 'scheduling_conflict', 'eval_no_show', 'other'
                ) then reason_key
            else 'other'
        end as intake_exit_reason,
        event_at as intake_exit_at
    from (
        select
            *,
            {{ regexp_replace_all(regexp_replace_all('lower(trim(reason))', '[^a-z0-9]+', '_'), '^_+|_+$', '') }}
                as reason_key
        from {{ ref('stg_raw__intake_events') }}
        where event_type in ('declined', 'unreachable', 'insurance_denied', 'lost')
    ) as x
    qualify row_number() over (partition by referral_id order by event_at desc, event_id desc) = 1
),

-- each referral's appointments per episode, in one pass over the appointments (26.6 M rows at 900 clinics; three
-- passes and a join back to them took most of this model's 66 s a night): its first and latest booking there and its
-- initial evaluations there, attended and booked
referral_appointments as {{ cte_materialized() }} (
    select
        referral_id,
        episode_id,
        min(booked_at) as first_booked_at,
        max(booked_at) as last_booked_at,
        min(scheduled_start) filter (where visit_type = 'initial_eval' and status = 'completed') as evaluated_at,
        min(scheduled_start) filter (where visit_type = 'initial_eval') as eval_booked_for
    from {{ ref('int_appointments_collapsed') }}
    where referral_id is not null
    group by referral_id, episode_id
),

-- the latest booking of each referral (an exit before it was superseded: the patient called back and booked) and
-- the referral's episode: the one of its first booked appointment
bookings as (
    select
        referral_id,
        max(last_booked_at) as last_booked_at,
        min_by(episode_id, first_booked_at) as episode_id
    from referral_appointments
    group by referral_id
),

live_exits as (
    select x.*
    from exits as x
    left join bookings as b on x.referral_id = b.referral_id
    where b.last_booked_at is null or b.last_booked_at <= x.intake_exit_at
),

referrals as (
    select
        agg.referral_id,
        coalesce(r.patient_id, agg.any_patient_id) as patient_id,
        coalesce(r.clinic_id, agg.any_clinic_id) as clinic_id,
        r.intake_kind,
        r.source_type,
        r.referring_physician_id,
        r.channel,
        r.payer_id,
        r.icd10_code,
        r.event_id is not null as has_received_event,
        coalesce(r.event_at, agg.first_event_at) as received_at,
        agg.first_outreach_at,
        agg.first_reached_at,
        agg.contacted_event_at,
        agg.outreach_attempts,
        x.intake_exit_stage,
        x.intake_exit_reason,
        x.intake_exit_at,
        agg.last_event_at
    from agg
    left join received as r using (referral_id)
    left join live_exits as x using (referral_id)
),

-- each referral's initial evaluations in that episode, attended and booked
referral_evals as (
    select
        a.referral_id,
        a.episode_id,
        a.evaluated_at,
        a.eval_booked_for
    from referral_appointments as a
    inner join bookings as b
        on a.referral_id = b.referral_id and a.episode_id = b.episode_id
),

owners as (
    select
        c.episode_id,
        c.referral_id,
        row_number() over (
            partition by c.episode_id
            order by c.evaluated_at nulls last, c.eval_booked_for nulls last, r.received_at, c.referral_id
        ) as owner_rank
    from referral_evals as c
    inner join referrals as r on c.referral_id = r.referral_id
)

select
    r.*,
    e.episode_id,
    coalesce(o.owner_rank > 1, false) as is_secondary_referral
from referrals as r
left join bookings as e on r.referral_id = e.referral_id
left join owners as o on e.referral_id = o.referral_id and e.episode_id = o.episode_id
