-- Treating clinicians and their standing weekly schedules (from the scheduler).
-- Latest version per natural key (therapist_id), by updated_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
with deduped as (
    {{ merge_latest(
        'therapists', [
            'therapist_id', 'clinic_id', 'first_name', 'last_name', 'credential', 'npi', 'hired_on',
            'terminated_on', 'weekly_hours', 'work_days', 'day_start', 'day_end', 'updated_at', '_load_id',
            '_row_hash', '_line'
        ],
        ['therapist_id'],
        'updated_at'
    ) }}
)

select
    cast(therapist_id as string) as therapist_id,
    cast(clinic_id as string) as clinic_id,
    cast(first_name as string) as first_name,
    cast(last_name as string) as last_name,
    cast(credential as string) as credential,
    cast(npi as string) as npi,
    cast(hired_on as date) as hired_on,
    cast(terminated_on as date) as terminated_on,
    cast(weekly_hours as decimal(18, 2)) as weekly_hours,
    cast(work_days as string) as work_days,
    cast(day_start as string) as day_start,
    cast(day_end as string) as day_end,
    cast(updated_at as timestamp) as updated_at,
    _load_id,
    _row_hash,
    _line
from deduped
