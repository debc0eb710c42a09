-- Insurance payers and plans the practice bills.
-- Latest version per natural key (payer_id), by updated_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
with deduped as (
    {{ merge_latest(
        'payers', [
            'payer_id', 'payer_name', 'payer_class', 'requires_auth', 'auth_visit_limit', 'updated_at',
            '_load_id', '_row_hash', '_line'
        ],
        ['payer_id'],
        'updated_at'
    ) }}
)

select
    cast(payer_id as string) as payer_id,
    cast(payer_name as string) as payer_name,
    cast(payer_class as string) as payer_class,
    cast(requires_auth as boolean) as requires_auth,
    cast(auth_visit_limit as integer) as auth_visit_limit,
    cast(updated_at as timestamp) as updated_at,
    _load_id,
    _row_hash,
    _line
from deduped
