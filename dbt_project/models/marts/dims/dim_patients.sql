-- One row per patient. The only mart with PHI columns (names, birth date, contact details): front desk only.
select
    patient_id,
    {{ patient_key('patient_id') }} as patient_key,
    first_name,
    last_name,
    birth_date,
    sex,
    phone,
    email,
    address_line,
    city,
    state,
    zip,
    primary_payer_id,
    member_id,
    created_at,
    updated_at
from {{ ref('stg_raw__patients') }}
