-- Prior authorizations received from payers for an episode of care.
-- Latest version per natural key (auth_id), by received_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
with deduped as (
    {{ merge_latest(
        'authorizations', [
            'auth_id', 'episode_id', 'patient_id', 'clinic_id', 'payer_id', 'visits_authorized', 'valid_from',
            'valid_to', 'received_at', '_load_id', '_row_hash', '_line'
        ],
        ['auth_id'],
        'received_at'
    ) }}
)

select
    cast(auth_id as string) as auth_id,
    cast(episode_id as string) as episode_id,
    cast(patient_id as string) as patient_id,
    cast(clinic_id as string) as clinic_id,
    cast(payer_id as string) as payer_id,
    cast(visits_authorized as integer) as visits_authorized,
    cast(valid_from as date) as valid_from,
    cast(valid_to as date) as valid_to,
    cast(received_at as timestamp) as received_at,
    _load_id,
    _row_hash,
    _line
from deduped
