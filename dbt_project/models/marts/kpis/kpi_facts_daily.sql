-- One row per clinic x day x KPI with the additive numerator and denominator of every ratio KPI of the KPI
-- table (seeds/kpi_definitions.csv) whose parts add up over days and clinics. practice_kpis rolls these up to
-- week / month / ALL.
-- (days_in_ar, cost_per_new_patient and attributed_roi are not additive over days: see practice_kpis.)
-- Each KPI is one CTE below: its formula on one line, numerator and denominator on the same row.
-- Cohort KPIs (denial rate, early dropout, conversions, times to contact and visit) also carry `cohort` and
-- `pending` (members with no outcome yet) so a young period can say it is still maturing; practice_kpis
-- turns them into resolved_share, and a period under the maturity bar is 'maturing'.
with k as (
    select
        as_of,
        cast(as_of as date) as as_of_date
    from {{ ref('int_clocks_resolved') }}
),

appts as (
    select
        a.clinic_id,
        cast(a.scheduled_start as date) as d,
        a.status,
        a.duration_min
    from {{ ref('appointments') }} as a, k
    where a.status <> 'scheduled' and a.scheduled_start <= k.as_of
),

refs as (
    select
        f.*,
        cast(f.received_at as date) as d
    from {{ ref('referral_funnel') }} as f, k
    where f.received_at <= k.as_of
),

closed_episodes as (
    select * from {{ ref('episodes') }}
    where is_closed
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
    select
        {{ day_series('(select min(d) from appts)', '(select as_of_date from k)') }} as d
),

-- ---------------------------------------------------------------- one CTE per KPI

-- no_show_rate = no-shows / appointments with an outcome
no_show_rate as (
    select
        clinic_id,
        d,
        'no_show_rate' as kpi,
        count(*) filter (where status = 'no_show') as num,
        count(*) as den,
        null as cohort,
        null as pending
    from appts
    group by all
),

-- cancel_no_show_rate = (cancellations + late cancellations + no-shows) / appointments with an outcome
cancel_no_show_rate as (
    select
        clinic_id,
        d,
        'cancel_no_show_rate' as kpi,
        count(*) filter (where status in ('no_show', 'cancelled', 'late_cancelled')) as num,
        count(*) as den,
        null as cohort,
        null as pending
    from appts
    group by all
),

-- arrival_rate = completed appointments / appointments with an outcome
arrival_rate as (
    select
        clinic_id,
        d,
        'arrival_rate' as kpi,
        count(*) filter (where status = 'completed') as num,
        count(*) as den,
        null as cohort,
        null as pending
    from appts
    group by all
),

-- minutes of completed, no-show and late-cancelled appointments
booked_minutes as (
    select
        clinic_id,
        d,
        sum(duration_min) filter (where status in ('completed', 'no_show', 'late_cancelled')) as minutes
    from appts
    group by all
),

-- contracted weekly hours spread over each therapist's working weekdays, home clinic, while employed
available_minutes as (
    select
        t.clinic_id,
        s.d,
        sum(t.weekly_hours * 60.0 / t.work_days_per_week) as minutes
    from {{ ref('dim_therapists') }} as t
    left join {{ ref('stg_raw__clinics') }} as c using (clinic_id)
    inner join spine as s
        on
            t.hired_on <= s.d
            and (c.opened_on is null or c.opened_on <= s.d)
            and (t.terminated_on is null or t.terminated_on >= s.d)
            and {{ pipe_list_contains('t.work_days', format_ts('s.d', '%a')) }}
    group by all
),

-- therapist_utilization = booked minutes (completed, no-show, late-cancelled) / available minutes
therapist_utilization as (
    select
        coalesce(b.clinic_id, a.clinic_id) as clinic_id,
        coalesce(b.d, a.d) as d,
        'therapist_utilization' as kpi,
        b.minutes as num,
        a.minutes as den,
        null as cohort,
        null as pending
    from booked_minutes as b
    full outer join available_minutes as a
        on b.clinic_id is not distinct from a.clinic_id and b.d = a.d
),

-- referral_conversion = referrals with a signed initial evaluation / referrals received (cohort by receipt)
referral_conversion as (
    select
        clinic_id,
        d,
        'referral_conversion' as kpi,
        count(*) filter (where converted_webpt) as num,
        count(*) as den,
        count(*) as cohort,
        count(*) filter (where is_open) as pending
    from refs
    group by all
),

-- conversion_7day = referrals first seen within 7 days of receipt / referrals received (cohort by receipt)
conversion_7day as (
    select
        refs.clinic_id,
        refs.d,
        'conversion_7day' as kpi,
        count(*) filter (where refs.converted_7day) as num,
        count(*) as den,
        count(*) as cohort,
        count(*) filter (
            where not refs.converted_7day and refs.received_at > k.as_of - interval 7 day
        ) as pending
    from refs, k
    group by all
),

-- hours_to_first_contact = sum of hours to first contact / referrals contacted (cohort by receipt)
hours_to_first_contact as (
    select
        clinic_id,
        d,
        'hours_to_first_contact' as kpi,
        -- summed as whole microseconds (exact integers): a double sum's last bit depends on the order rows
        -- arrive in, and a rounded decimal drifts from the hours themselves
        cast(sum(cast(round(hours_to_contact * 3600000000) as {{ type_int128() }})) as double) / 3600000000 as num,
        count(hours_to_contact) as den,
        count(*) as cohort,
        count(*) filter (where first_contact_at is null and exit_stage is null) as pending
    from refs
    group by all
),

-- business_days_to_first_visit = sum of business days to evaluation / referrals evaluated (cohort by receipt)
business_days_to_first_visit as (
    select
        clinic_id,
        d,
        'business_days_to_first_visit' as kpi,
        sum(business_days_to_eval) as num,
        count(business_days_to_eval) as den,
        count(*) as cohort,
        count(*) filter (where evaluated_at is null and exit_stage is null) as pending
    from refs
    group by all
),

-- visits_per_discharge = attended visits of episodes closed on the day / episodes closed
visits_per_discharge as (
    select
        clinic_id,
        discharge_date as d,
        'visits_per_discharge' as kpi,
        sum(attended_visits) as num,
        count(*) as den,
        null as cohort,
        null as pending
    from closed_episodes
    group by all
),

-- poc_completion_rate = closed episodes that completed the plan of care / episodes closed
poc_completion_rate as (
    select
        clinic_id,
        discharge_date as d,
        'poc_completion_rate' as kpi,
        count(*) filter (where plan_completed) as num,
        count(*) as den,
        null as cohort,
        null as pending
    from closed_episodes
    group by all
),

-- early_dropout_rate = episodes closed before visit 3 / episodes with a known outcome (closed, or past
-- visit 2), cohort by evaluation date
early_dropout_rate as (
    select
        clinic_id,
        eval_date as d,
        'early_dropout_rate' as kpi,
        count(*) filter (where early_dropout and (is_closed or attended_visits >= 3)) as num,
        count(*) filter (where is_closed or attended_visits >= 3) as den,
        count(*) as cohort,
        count(*) filter (where not is_closed and attended_visits < 3) as pending
    from {{ ref('episodes') }}
    group by all
),

-- units_per_visit = billed units of lines linked to an attended visit (G- and L-codes excluded) / those visits,
-- by service date. One rule for both: a line linked to no attended visit (unlinked, or its appointment not
-- completed) counts in neither (link_health reports unlinked lines)
units_per_visit as (
    select
        l.clinic_id,
        l.service_date as d,
        'units_per_visit' as kpi,
        sum(l.units) as num,
        count(distinct l.appointment_id) as den,
        null as cohort,
        null as pending
    from {{ ref('int_charge_lines_classified') }} as l
    inner join {{ ref('appointments') }} as a
        on l.appointment_id = a.appointment_id and a.status = 'completed'
    where not l.is_excluded_from_units
    group by all
),

visits_attended as (
    select
        a.clinic_id,
        cast(a.scheduled_start as date) as d,
        count(*) as visits
    from {{ ref('appointments') }} as a, k
    where a.status = 'completed' and a.scheduled_start <= k.as_of
    group by all
),

-- net_revenue_per_visit = collections posted on the day / visits attended on the day (cash basis: a
-- service-date cohort would show recent periods as unpaid, because payers pay weeks later)
net_revenue_per_visit as (
    select
        coalesce(p.clinic_id, v.clinic_id) as clinic_id,
        coalesce(p.d, v.d) as d,
        'net_revenue_per_visit' as kpi,
        p.collected_usd as num,
        v.visits as den,
        null as cohort,
        null as pending
    from posted as p
    full outer join visits_attended as v
        on p.clinic_id is not distinct from v.clinic_id and p.d = v.d
),

charges_billed as (
    select
        clinic_id,
        service_date as d,
        sum(billed_usd) as billed_usd
    from {{ ref('claims') }}
    group by all
),

-- net_collection_rate = collections posted / (charges of services on the day - contractual adjustments
-- posted on the day), cash basis
net_collection_rate as (
    select
        coalesce(p.clinic_id, b.clinic_id) as clinic_id,
        coalesce(p.d, b.d) as d,
        'net_collection_rate' as kpi,
        p.collected_usd as num,
        -- as doubles, as the parts were added before (identical rounding)
        coalesce(cast(b.billed_usd as double), 0) - coalesce(cast(p.contractual_adj_usd as double), 0) as den,
        null as cohort,
        null as pending
    from posted as p
    full outer join charges_billed as b
        on p.clinic_id is not distinct from b.clinic_id and p.d = b.d
),

-- denial_rate = claims with a denial / claims adjudicated, cohort by submission date
-- (the cohort: claims sent to a payer; self-pay claims and claims with no payer are answered by none, and a voided
-- claim was withdrawn from the payer: claims.claim_status)
denial_rate as (
    select
        clinic_id,
        cast(submitted_at as date) as d,
        'denial_rate' as kpi,
        count(*) filter (where is_denied and is_adjudicated) as num,
        count(*) filter (where is_adjudicated) as den,
        count(*) as cohort,
        count(*) filter (where not is_adjudicated) as pending
    from {{ ref('claims') }}
    where {{ is_payer_claim('payer_id', 'payer_class') }} and claim_status <> 'voided'
    group by all
),

-- ---------------------------------------------------------------- all KPIs, long

kpis as (
    select * from no_show_rate
    union all
    select * from cancel_no_show_rate
    union all
    select * from arrival_rate
    union all
    select * from therapist_utilization
    union all
    select * from referral_conversion
    union all
    select * from conversion_7day
    union all
    select * from hours_to_first_contact
    union all
    select * from business_days_to_first_visit
    union all
    select * from visits_per_discharge
    union all
    select * from poc_completion_rate
    union all
    select * from early_dropout_rate
    union all
    select * from units_per_visit
    union all
    select * from net_revenue_per_visit
    union all
    select * from net_collection_rate
    union all
    select * from denial_rate
)

select
    kpis.clinic_id,
    kpis.d as date_day,
    kpis.kpi,
    cast(coalesce(kpis.num, 0) as double) as numerator,
    cast(coalesce(kpis.den, 0) as double) as denominator,
    cast(kpis.cohort as double) as cohort,
    cast(kpis.pending as double) as pending
from kpis
cross join k
where kpis.d is not null and kpis.d <= k.as_of_date
