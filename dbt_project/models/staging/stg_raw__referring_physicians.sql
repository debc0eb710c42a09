-- Referring providers (physicians, NPs, PAs, chiropractors, podiatrists) known to the practice.
-- Latest version per natural key (physician_id), by updated_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
with deduped as (
    {{ merge_latest(
        'referring_physicians', [
            'physician_id', 'first_name', 'last_name', 'credential', 'specialty', 'practice_name', 'city',
            'state', 'updated_at', '_load_id', '_row_hash', '_line'
        ],
        ['physician_id'],
        'updated_at'
    ) }}
)

select
    cast(physician_id as string) as physician_id,
    cast(first_name as string) as first_name,
    cast(last_name as string) as last_name,
    cast(credential as string) as credential,
    cast(specialty as string) as specialty,
    cast(practice_name as string) as practice_name,
    cast(city as string) as city,
    cast(state as string) as state,
    cast(updated_at as timestamp) as updated_at,
    _load_id,
    _row_hash,
    _line
from deduped
