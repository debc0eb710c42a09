-- Clinic locations of the practice network (reference file from the practice-management system).
-- Latest version per natural key (clinic_id), by updated_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
with deduped as (
    {{ merge_latest(
        'clinics', [
            'clinic_id', 'clinic_name', 'address_line', 'city', 'state', 'zip', 'timezone', 'opened_on',
            'treatment_tables', 'npi', 'updated_at', '_load_id', '_row_hash', '_line'
        ],
        ['clinic_id'],
        'updated_at'
    ) }}
)

select
    cast(clinic_id as string) as clinic_id,
    cast(clinic_name as string) as clinic_name,
    cast(address_line as string) as address_line,
    cast(city as string) as city,
    cast(state as string) as state,
    cast(zip as string) as zip,
    cast(timezone as string) as timezone,
    cast(opened_on as date) as opened_on,
    cast(treatment_tables as integer) as treatment_tables,
    cast(npi as string) as npi,
    cast(updated_at as timestamp) as updated_at,
    _load_id,
    _row_hash,
    _line
from deduped
