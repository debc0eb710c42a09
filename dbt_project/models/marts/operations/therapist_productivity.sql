-- One row per therapist x clinic x month: appointments with an outcome up to as_of (the arrival-rate
-- denominator of kpi_facts_daily), attended visits, no-shows and cancellations, the days the therapist saw
-- at least one patient, scheduled hours, and billed units over billable visits (the units-per-visit KPI's
-- parts: lines linked to an attended visit, from the therapist on the charge line, dated up to as_of as in
-- kpi_facts_daily). Productivity = attended visits per day worked (a day worked = a date with at least one
-- attended visit). Appointments or charge lines with no therapist go to therapist 'unassigned', so the rows
-- add up to the practice's visits and units.
with k as (
    select as_of from {{ ref('int_clocks_resolved') }}
),

appts as (
    select
        coalesce(a.therapist_id, 'unassigned') as therapist_id,
        a.clinic_id,
        cast(date_trunc('month', a.scheduled_start) as date) as month,
        count(*) as appointments,
        count(*) filter (where a.status = 'completed') as visits,
        count(*) filter (where a.status = 'no_show') as no_shows,
        count(*) filter (where a.status in ('cancelled', 'late_cancelled')) as cancellations,
        count(distinct cast(a.scheduled_start as date)) filter (where a.status = 'completed') as days_worked,
        sum(a.duration_min) / 60.0 as scheduled_hours,
        coalesce(sum(a.duration_min) filter (where a.status = 'completed'), 0) / 60.0 as attended_hours
    from {{ ref('appointments') }} as a
    cross join k
    where a.status <> 'scheduled' and a.scheduled_start <= k.as_of
    group by all
),

units as (
    select
        coalesce(l.therapist_id, 'unassigned') as therapist_id,
        l.clinic_id,
        cast(date_trunc('month', l.service_date) as date) as month,
        sum(l.units) as billed_units,
        count(distinct l.appointment_id) as billable_visits
    from {{ ref('int_charge_lines_classified') }} as l
    -- the KPI's rule: lines linked to an attended visit, in the numerator and the denominator alike
    inner join {{ ref('appointments') }} as a
        on l.appointment_id = a.appointment_id and a.status = 'completed'
    cross join k
    where not l.is_excluded_from_units and l.service_date <= cast(k.as_of as date)
    group by all
)

select
    therapist_id,
    -- the full join's merged key, spelled out: dim_therapists has a clinic_id too (ambiguous on Spark)
    coalesce(a.clinic_id, u.clinic_id) as clinic_id,
    month,
    coalesce(t.therapist_name, 'Therapist not on file') as therapist_name,
    coalesce(t.is_current, false) as is_current,
    coalesce(a.appointments, 0) as appointments,
    coalesce(a.visits, 0) as visits,
    coalesce(a.no_shows, 0) as no_shows,
    coalesce(a.cancellations, 0) as cancellations,
    coalesce(a.days_worked, 0) as days_worked,
    cast(coalesce(a.scheduled_hours, 0) as double) as scheduled_hours,
    cast(coalesce(a.attended_hours, 0) as double) as attended_hours,
    coalesce(u.billed_units, 0) as billed_units,
    coalesce(u.billable_visits, 0) as billable_visits,
    {{ safe_div('a.visits', 'a.appointments') }} as arrival_rate,
    {{ safe_div('u.billed_units', 'u.billable_visits') }} as units_per_visit,
    {{ safe_div('a.visits', 'a.days_worked') }} as visits_per_day_worked
from appts as a
full outer join units as u using (therapist_id, clinic_id, month)
left join {{ ref('dim_therapists') }} as t using (therapist_id)
where month is not null
