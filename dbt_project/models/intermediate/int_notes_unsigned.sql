-- One row per clinical note (latest version) still unsigned at as_of, for the clinician queue.
select
    n.note_id,
    n.episode_id,
    n.appointment_id,
    n.patient_id,
    n.clinic_id,
    n.therapist_id,
    n.note_type,
    n.service_date,
    n.created_at
from {{ ref('stg_raw__documentation_events') }} as n
where n.signed_at is null
