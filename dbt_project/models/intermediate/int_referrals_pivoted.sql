-- One row per referral (or lead): the intake events pivoted into the received attributes, first outreach,
-- first contact and the intake exit. Funnel logic on top of this lives in marts/referral_funnel.
with ev as {{ cte_materialized() }} (
    select * from {{ ref('stg_raw__intake_events') }}
),

received as (
    select *
    from ev
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
        any_value(patient_id) as any_patient_id,
        any_value(clinic_id) as any_clinic_id
    from ev
    group by referral_id
),

exits as (
    select
        referral_id,
        event_type as intake_exit_stage,
        reason as intake_exit_reason,
        event_at as intake_exit_at
    from ev
    where event_type in ('declined', 'unreachable', 'insurance_denied', 'lost')
    qualify row_number() over (partition by referral_id order by event_at desc, event_id desc) = 1
)

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
left join exits as x using (referral_id)
