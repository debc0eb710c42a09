-- One row per episode that has clinical documentation: the initial evaluation (plan of care, diagnosis,
-- baseline outcome score), the latest plan (re-evaluations update it), the discharge summary and note counts.
-- Notes without an episode id take the one the linking rule found (int_visit_links); notes it could not place are
-- left out here and counted in marts.link_health.
-- Incremental (macros/incremental.sql, notes_summarised_scope): recomputes the episodes of the notes int_visit_links
-- recomputed (their old and new episode), from every note linked to them.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('notes_summarised', ['episode_id'])[0] }}",
        "{{ scope_hooks('notes_summarised', ['episode_id'])[1] }}"
    ]
) }}

with links as (
    select
        row_id,
        appointment_id,
        episode_id
    from {{ in_scope(ref('int_visit_links'), {'episode_id': 'episode_id'}) }}
    where source = 'documentation_events' and episode_id is not null
),

notes as {{ cte_materialized() }} (
    select
        {{ star_except(['appointment_id', 'episode_id'], 'n') }},  -- noqa: AM04
        l.appointment_id,
        l.episode_id
    from {{ ref('stg_raw__documentation_events') }} as n
    inner join links as l on n.note_id = l.row_id
),

eval as (
    select *
    from notes
    where note_type = 'initial_eval'
    qualify row_number() over (partition by episode_id order by service_date, created_at, note_id) = 1
),

latest_plan as (
    select
        episode_id,
        planned_visits,
        frequency_per_week,
        plan_weeks
    from notes
    where note_type in ('initial_eval', 're_eval') and planned_visits is not null
    qualify row_number() over (partition by episode_id order by service_date desc, created_at desc, note_id desc) = 1
),

discharge as (
    select *
    from notes
    where note_type = 'discharge_summary'
    qualify row_number() over (partition by episode_id order by service_date desc, created_at desc, note_id desc) = 1
),

agg as (
    select
        episode_id,
        min(patient_id) as any_patient_id,  -- min, not any_value: the same pick in a full and an incremental build
        min(clinic_id) as any_clinic_id,
        count(*) as notes,
        count(*) filter (where signed_at is null) as unsigned_notes
    from notes
    group by episode_id
)

select
    agg.episode_id,
    coalesce(e.patient_id, d.patient_id, agg.any_patient_id) as patient_id,
    coalesce(e.clinic_id, d.clinic_id, agg.any_clinic_id) as clinic_id,
    e.note_id as eval_note_id,
    e.appointment_id as eval_appointment_id,
    e.therapist_id as eval_therapist_id,
    e.service_date as eval_date,
    e.created_at as eval_note_created_at,
    e.signed_at as eval_note_signed_at,
    e.icd10_primary,
    e.icd10_secondary,
    e.body_region,
    e.outcome_measure,
    e.outcome_score as outcome_score_eval,
    coalesce(p.planned_visits, e.planned_visits) as planned_visits,
    coalesce(p.frequency_per_week, e.frequency_per_week) as frequency_per_week,
    coalesce(p.plan_weeks, e.plan_weeks) as plan_weeks,
    d.note_id as discharge_note_id,
    d.service_date as discharge_summary_date,
    d.created_at as discharge_summary_created_at,
    d.discharge_reason,
    d.outcome_score as outcome_score_discharge,
    agg.notes,
    agg.unsigned_notes
from agg
left join eval as e using (episode_id)
left join latest_plan as p using (episode_id)
left join discharge as d using (episode_id)
