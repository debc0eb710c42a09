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
    cast(physician_id as varchar) as physician_id,
    cast(first_name as varchar) as first_name,
    cast(last_name as varchar) as last_name,
    cast(credential as varchar) as credential,
    cast(specialty as varchar) as specialty,
    cast(practice_name as varchar) as practice_name,
    cast(city as varchar) as city,
    cast(state as varchar) as state,
    cast(updated_at as timestamp) as updated_at,
    _load_id,
    _row_hash,
    _line
from deduped
