-- One row per clinical note (latest version) still unsigned at as_of, for the clinician queue; episode and visit as
-- carried, else as linked (int_visit_links).
select
    n.note_id,
    l.episode_id,
    l.appointment_id,
    n.patient_id,
    n.clinic_id,
    n.therapist_id,
    n.note_type,
    n.service_date,
    n.created_at
from {{ ref('stg_raw__documentation_events') }} as n
left join {{ ref('int_visit_links') }} as l on l.source = 'documentation_events' and n.note_id = l.row_id
where n.signed_at is null
