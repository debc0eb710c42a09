-- One row per clinic, with the therapists on staff and their contracted minutes per week.
with staff as (
    select
        clinic_id,
        count(*) as therapists,
        sum(weekly_hours) * 60 as available_minutes_per_week
    from {{ ref('dim_therapists') }}
    where is_current
    group by clinic_id
)

select
    c.clinic_id,
    c.clinic_name,
    c.address_line,
    c.city,
    c.state,
    c.zip,
    c.timezone,
    c.opened_on,
    c.treatment_tables,
    coalesce(s.therapists, 0) as therapists,
    coalesce(s.available_minutes_per_week, 0) as available_minutes_per_week
from {{ ref('stg_raw__clinics') }} as c
left join staff as s using (clinic_id)
