-- One row per referring provider (NPI-shaped id), with display name and specialty. Not patient data.
select
    physician_id,
    first_name,
    last_name,
    coalesce(credential, '') as credential,
    trim(first_name || ' ' || last_name || coalesce(', ' || credential, '')) as physician_name,
    specialty,
    practice_name,
    city,
    state
from {{ ref('stg_raw__referring_physicians') }}
