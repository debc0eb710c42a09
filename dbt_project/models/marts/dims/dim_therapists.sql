-- One row per therapist: home clinic, credential, standing schedule and available minutes per week.
select
    t.therapist_id,
    t.clinic_id,
    t.first_name,
    t.last_name,
    t.first_name || ' ' || t.last_name || ', ' || t.credential as therapist_name,
    t.credential,
    t.npi,
    t.hired_on,
    t.terminated_on,
    t.weekly_hours,
    t.weekly_hours * 60 as available_minutes_per_week,
    t.work_days,
    {{ pipe_list_length('t.work_days') }} as work_days_per_week,
    t.day_start,
    t.day_end,
    t.terminated_on is null or t.terminated_on > cast(k.as_of as date) as is_current
from {{ ref('stg_raw__therapists') }} as t
cross join {{ ref('int_clocks_resolved') }} as k
