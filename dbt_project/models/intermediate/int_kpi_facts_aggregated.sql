-- One row per clinic x day x KPI with the additive numerator and denominator of every ratio KPI of
-- DESIGN.md whose parts add up over days and clinics. practice_kpis rolls these up to week / month / ALL.
-- (days_in_ar, cost_per_new_patient and attributed_roi are not additive over days: see practice_kpis.)
-- Cohort KPIs (denial rate, early dropout, conversions, times to contact and visit) also carry `cohort` and
-- `pending` (members with no outcome yet) so a young period can say it is still maturing.
with k as (
    select as_of, cast(as_of as date) as as_of_date from {{ ref('int_clocks_resolved') }}
),

appts as (
    select a.clinic_id, cast(a.scheduled_start as date) as d, a.status, a.duration_min
    from {{ ref('appointments') }} as a, k
    where a.status <> 'scheduled' and a.scheduled_start <= k.as_of
),

refs as (
    select f.*, cast(f.received_at as date) as d
    from {{ ref('referral_funnel') }} as f, k
    where f.received_at <= k.as_of
),

eps as (
    select * from {{ ref('episodes') }}
),

claims as (
    select c.* from {{ ref('claims') }} as c
),

-- money posted (cash basis): payer and patient payments and contractual adjustments by the day they were
-- posted, every landed remittance (no inner join to claims: a payment whose claim row was quarantined still
-- counts, at the clinic of its charge lines or at clinic 'unattributed'; see int_remittances_attributed)
posted as (
    select
        r.clinic_id,
        cast(r.event_at as date) as d,
        sum(r.amount_usd) filter (where r.event_type in ('payer_payment', 'patient_payment')) as collected_usd,
        sum(r.amount_usd) filter (where r.event_type = 'contractual_adjustment') as contractual_adj_usd
    from {{ ref('int_remittances_attributed') }} as r
    group by all
),

spine as (
    select cast(unnest(generate_series(
        (select min(d) from appts), (select as_of_date from k), interval 1 day)) as date) as d
),

available as (
    select t.clinic_id, s.d, t.weekly_hours * 60.0 / t.work_days_per_week as minutes
    from {{ ref('dim_therapists') }} as t
    left join {{ ref('stg_raw__clinics') }} as c using (clinic_id)
    join spine as s
        on s.d >= t.hired_on
        and (c.opened_on is null or s.d >= c.opened_on)
        and (t.terminated_on is null or s.d <= t.terminated_on)
        and list_contains(string_split(t.work_days, '|'), strftime(s.d, '%a'))
),

facts as (
    select clinic_id, d, 'no_show_rate' as kpi, count(*) filter (where status = 'no_show') as num, count(*) as den
    from appts group by all
    union all
    select clinic_id, d, 'cancel_no_show_rate',
        count(*) filter (where status in ('no_show', 'cancelled', 'late_cancelled')), count(*)
    from appts group by all
    union all
    select clinic_id, d, 'arrival_rate', count(*) filter (where status = 'completed'), count(*)
    from appts group by all
    union all
    select clinic_id, d, 'therapist_utilization',
        sum(duration_min) filter (where status in ('completed', 'no_show', 'late_cancelled')), 0
    from appts group by all
    union all
    select clinic_id, d, 'therapist_utilization', 0, sum(minutes)
    from available group by all
    union all
    select clinic_id, d, 'referral_conversion', count(*) filter (where converted_webpt), count(*)
    from refs group by all
    union all
    select clinic_id, d, 'conversion_7day', count(*) filter (where converted_7day), count(*)
    from refs group by all
    union all
    select clinic_id, d, 'hours_to_first_contact', sum(hours_to_contact), count(*)
    from refs where hours_to_contact is not null group by all
    union all
    select clinic_id, d, 'business_days_to_first_visit', sum(business_days_to_eval), count(*)
    from refs where business_days_to_eval is not null group by all
    union all
    select clinic_id, discharge_date, 'visits_per_discharge', sum(attended_visits), count(*)
    from eps where is_closed group by all
    union all
    select clinic_id, discharge_date, 'poc_completion_rate', count(*) filter (where plan_completed), count(*)
    from eps where is_closed group by all
    union all
    -- cohort by evaluation date, over episodes whose outcome is known (closed, or past visit 2)
    select clinic_id, eval_date, 'early_dropout_rate', count(*) filter (where early_dropout), count(*)
    from eps where is_closed or attended_visits >= 3 group by all
    union all
    select clinic_id, service_date, 'units_per_visit', sum(units), count(distinct appointment_id)
    from {{ ref('int_charge_lines_classified') }}
    where not is_excluded_from_units
    group by all
    union all
    -- cash basis: collections posted in the period / visits attended in the period (a service-date cohort
    -- would show recent periods as unpaid, because payers pay weeks later)
    select clinic_id, d, 'net_revenue_per_visit', sum(collected_usd), 0
    from posted group by all
    union all
    select clinic_id, cast(scheduled_start as date), 'net_revenue_per_visit', 0, count(*)
    from {{ ref('appointments') }}, k
    where status = 'completed' and scheduled_start <= k.as_of
    group by all
    union all
    -- cash basis: collections posted in the period / (charges of services in the period - contractual
    -- adjustments posted in the period)
    select clinic_id, d, 'net_collection_rate', sum(collected_usd), -sum(contractual_adj_usd)
    from posted group by all
    union all
    select clinic_id, service_date, 'net_collection_rate', 0, sum(billed_usd)
    from claims group by all
    union all
    -- cohort by submission date, over adjudicated claims only
    select clinic_id, cast(submitted_at as date), 'denial_rate', count(*) filter (where is_denied), count(*)
    from claims where is_adjudicated group by all
),

-- Maturity of the cohort KPIs: per clinic x cohort day, how many members the cohort has and how many have no
-- outcome yet. practice_kpis turns it into resolved_share; a period under the maturity bar is 'maturing'.
maturity as (
    select clinic_id, cast(submitted_at as date) as d, 'denial_rate' as kpi, count(*) as cohort,
        count(*) filter (where not is_adjudicated) as pending
    from claims group by all
    union all
    select clinic_id, eval_date, 'early_dropout_rate', count(*),
        count(*) filter (where not is_closed and attended_visits < 3)
    from eps group by all
    union all
    select clinic_id, d, 'referral_conversion', count(*),
        count(*) filter (where not converted_webpt and exit_stage is null and discharged_at is null)
    from refs group by all
    union all
    select clinic_id, d, 'conversion_7day', count(*),
        count(*) filter (where not converted_7day and received_at > k.as_of - interval 7 day)
    from refs, k group by all
    union all
    select clinic_id, d, 'hours_to_first_contact', count(*),
        count(*) filter (where first_contact_at is null and exit_stage is null)
    from refs group by all
    union all
    select clinic_id, d, 'business_days_to_first_visit', count(*),
        count(*) filter (where evaluated_at is null and exit_stage is null)
    from refs group by all
),

summed as (
    select clinic_id, d, kpi, sum(num) * 1.0 as numerator, sum(den) * 1.0 as denominator
    from facts
    group by all
),

matured as (
    select clinic_id, d, kpi, sum(cohort) * 1.0 as cohort, sum(pending) * 1.0 as pending
    from maturity
    group by all
)

select
    coalesce(s.clinic_id, m.clinic_id) as clinic_id,
    coalesce(s.d, m.d) as date_day,
    coalesce(s.kpi, m.kpi) as kpi,
    coalesce(s.numerator, 0) as numerator,
    coalesce(s.denominator, 0) as denominator,
    m.cohort,
    m.pending
from summed as s
full outer join matured as m
    on s.clinic_id is not distinct from m.clinic_id and s.d = m.d and s.kpi = m.kpi
cross join k
where coalesce(s.d, m.d) is not null and coalesce(s.d, m.d) <= k.as_of_date
