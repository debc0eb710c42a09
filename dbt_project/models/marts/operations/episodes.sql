-- One row per episode of care that started (an initial evaluation was documented or a visit attended).
-- status: discharged (discharge summary, or plan finished and nothing booked for self_discharge_days),
-- self_discharged (discharge reason self_discharged, or no visit and no future appointment for
-- self_discharge_days while the plan of care is unfinished), else active.
with appts as (
    select
        episode_id,
        any_value(referral_id) filter (where referral_id is not null) as referral_id,
        any_value(patient_id) as patient_id,
        any_value(clinic_id) as clinic_id,
        min_by(therapist_id, scheduled_start) filter (where status = 'completed') as first_therapist_id,
        count(*) filter (where status = 'completed') as attended_visits,
        min(scheduled_start) filter (where status = 'completed') as first_visit_at,
        max(scheduled_start) filter (where status = 'completed') as last_visit_at,
        min(scheduled_start) filter (where is_future) as next_appointment_at,
        count(*) filter (where is_future) as future_appointments,
        count(*) filter (where status = 'no_show') as no_shows,
        count(*) filter (where status = 'late_cancelled') as late_cancels,
        count(*) filter (where status = 'cancelled') as cancels
    from {{ ref('appointments') }}
    where episode_id is not null  -- visits no episode could be found for (int_visit_links) are not an episode
    group by episode_id
),

claim_money as (
    select
        episode_id,
        min_by(payer_id, service_date) as first_claim_payer_id,
        sum(billed_usd) as charges_usd,
        sum(payer_paid_usd + patient_paid_usd) as net_revenue_usd
    from {{ ref('int_claims_reconciled') }}
    where episode_id is not null
    group by episode_id
),

-- payments on a claim whose row was quarantined still belong to the episode its charge lines name
orphan_cash as (
    select
        episode_id,
        sum(amount_usd) as net_revenue_usd
    from {{ ref('int_remittances_attributed') }}
    where not claim_known and episode_id is not null and event_type in ('payer_payment', 'patient_payment')
    group by episode_id
),

money as (
    select
        coalesce(c.episode_id, o.episode_id) as episode_id,
        c.first_claim_payer_id,
        c.charges_usd,
        coalesce(c.net_revenue_usd, 0) + coalesce(o.net_revenue_usd, 0) as net_revenue_usd
    from claim_money as c
    full outer join orphan_cash as o using (episode_id)
),

-- the episode's owning referral (int_referrals_pivoted: one per episode), else any referral its visits carry
owners as (
    select
        episode_id,
        any_value(referral_id) as referral_id
    from {{ ref('int_referrals_pivoted') }}
    where episode_id is not null and not is_secondary_referral
    group by episode_id
),

ids as (
    select episode_id from appts
    where attended_visits > 0
    union
    select episode_id from {{ ref('int_notes_summarised') }}
    where eval_note_id is not null
),

joined as (
    select
        ids.episode_id,
        coalesce(ow.referral_id, a.referral_id) as referral_id,
        coalesce(n.patient_id, a.patient_id) as patient_id,
        coalesce(n.clinic_id, a.clinic_id) as clinic_id,
        coalesce(n.eval_therapist_id, a.first_therapist_id) as therapist_id,
        coalesce(r.payer_id, m.first_claim_payer_id) as payer_id,
        n.icd10_primary,
        n.body_region,
        coalesce(n.eval_date, cast(a.first_visit_at as date)) as eval_date,
        n.eval_note_signed_at,
        n.planned_visits,
        n.frequency_per_week,
        coalesce(a.attended_visits, 0) as attended_visits,
        a.first_visit_at,
        a.last_visit_at,
        cast(a.last_visit_at as date) as last_visit_date,
        a.next_appointment_at,
        coalesce(a.future_appointments, 0) as future_appointments,
        coalesce(a.no_shows, 0) as no_shows,
        coalesce(a.late_cancels, 0) as late_cancels,
        coalesce(a.cancels, 0) as cancels,
        n.discharge_summary_date,
        n.discharge_summary_created_at,
        n.discharge_reason as documented_discharge_reason,
        n.outcome_measure,
        n.outcome_score_eval,
        n.outcome_score_discharge,
        coalesce(m.charges_usd, 0) as charges_usd,
        coalesce(m.net_revenue_usd, 0) as net_revenue_usd,
        coalesce(a.attended_visits, 0) >= n.planned_visits as reached_planned_visits,
        coalesce(a.future_appointments, 0) = 0
        and coalesce(a.last_visit_at, cast(n.eval_date as timestamp))
        < c.as_of - {{ days_interval(var('self_discharge_days')) }} as is_dormant
    from ids
    left join appts as a using (episode_id)
    left join owners as ow using (episode_id)
    left join {{ ref('int_notes_summarised') }} as n using (episode_id)
    left join money as m using (episode_id)
    left join {{ ref('int_referrals_pivoted') }} as r on coalesce(ow.referral_id, a.referral_id) = r.referral_id
    cross join {{ ref('int_clocks_resolved') }} as c
),

statused as (
    select
        *,
        case
            when discharge_summary_date is not null and documented_discharge_reason = 'self_discharged'
                then 'self_discharged'
            when discharge_summary_date is not null then 'discharged'
            when is_dormant and coalesce(reached_planned_visits, false) then 'discharged'
            when is_dormant then 'self_discharged'
            else 'active'
        end as status
    from joined
)

select
    s.episode_id,
    s.referral_id,
    s.patient_id,
    {{ patient_key('s.patient_id') }} as patient_key,
    s.clinic_id,
    s.therapist_id,
    s.payer_id,
    p.payer_class,
    s.icd10_primary,
    s.body_region,
    s.eval_date,
    s.eval_note_signed_at,
    s.planned_visits,
    s.frequency_per_week,
    s.attended_visits,
    s.first_visit_at,
    s.last_visit_at,
    s.last_visit_date,
    s.next_appointment_at,
    s.future_appointments,
    s.no_shows,
    s.late_cancels,
    s.cancels,
    case
        when s.status = 'active' then null
        when s.discharge_summary_date is not null then s.discharge_summary_date
        else coalesce(s.last_visit_date, s.eval_date)
    end as discharge_date,
    case
        when s.status = 'active' then null
        when s.discharge_summary_date is not null then s.discharge_summary_created_at
        else coalesce(s.last_visit_at, cast(s.eval_date as timestamp))
    end as discharged_at,
    case
        when s.status = 'active' then null
        when s.documented_discharge_reason is not null then s.documented_discharge_reason
        when s.status = 'discharged' then 'plan_completed'
        else 'self_discharged'
    end as discharge_reason,
    s.documented_discharge_reason is not null as has_discharge_summary,
    s.status,
    s.status <> 'active' as is_closed,
    (s.status <> 'active')
    and (coalesce(s.reached_planned_visits, false) or s.status = 'discharged') as plan_completed,
    (s.status <> 'active') and s.attended_visits < 3 as early_dropout,
    s.outcome_measure,
    s.outcome_score_eval,
    s.outcome_score_discharge,
    s.outcome_score_discharge - s.outcome_score_eval as outcome_change,
    case
        when s.outcome_score_eval is null or s.outcome_score_discharge is null or om.mcid is null then null
        when om.better = 'higher' then s.outcome_score_discharge - s.outcome_score_eval >= om.mcid
        else s.outcome_score_eval - s.outcome_score_discharge >= om.mcid
    end as met_mcid,
    s.charges_usd,
    s.net_revenue_usd
from statused as s
left join {{ ref('stg_raw__payers') }} as p using (payer_id)
left join {{ ref('outcome_measures') }} as om using (outcome_measure)
