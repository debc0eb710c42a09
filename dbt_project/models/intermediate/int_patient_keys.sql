-- One row per distinct patient id seen in any source, with its keyed pseudonym (patient_key): HMAC-SHA256
-- with the installation secret (UDF ptpulse_pseudonym, ptpulse/build/dbt_plugin.py), so the Python function
-- runs once per patient, never per event row. The patient_key macro looks keys up here. Column `pid` (not
-- patient_id) so the macro's lookup never resolves an unqualified outer `patient_id` to this table.
with ids as (
    select patient_id from {{ ref('stg_raw__patients') }}
    union
    select patient_id from {{ ref('stg_raw__intake_events') }}
    union
    select patient_id from {{ ref('stg_raw__scheduling_events') }}
    union
    select patient_id from {{ ref('stg_raw__documentation_events') }}
    union
    select patient_id from {{ ref('stg_raw__charges') }}
    union
    select patient_id from {{ ref('stg_raw__claims') }}
    union
    select patient_id from {{ ref('stg_raw__authorizations') }}
)

select
    patient_id as pid,
    ptpulse_pseudonym(patient_id) as patient_key
from ids
where patient_id is not null
