-- Monthly marketing spend per clinic and channel (from the marketing budget sheet).
-- Latest version per natural key (month, clinic_id, channel), by reported_at within each source
-- system; across systems each field from the most authoritative system that carries it (merge_latest);
-- rename and cast only.
with deduped as (
    {{ merge_latest(
        'marketing_spend', [
            'month', 'clinic_id', 'channel', 'spend_usd', 'reported_at', '_load_id', '_row_hash', '_line'
        ],
        ['month', 'clinic_id', 'channel'],
        'reported_at'
    ) }}
)

select
    cast(month as date) as month,
    cast(clinic_id as string) as clinic_id,
    cast(channel as string) as channel,
    cast(spend_usd as decimal(18, 2)) as spend_usd,
    cast(reported_at as timestamp) as reported_at,
    _load_id,
    _row_hash,
    _line
from deduped
