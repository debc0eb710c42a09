-- Marketing touches on a lead's or referral's journey before intake (ad clicks, social, web visits, events,
-- employer programs, word of mouth).
-- Latest version per natural key (touch_id), by touched_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
with deduped as (
    {{ merge_latest(
        'marketing_touches', [
            'touch_id', 'referral_id', 'channel', 'campaign', 'touched_at', '_load_id', '_row_hash', '_line'
        ],
        ['touch_id'],
        'touched_at'
    ) }}
)

select
    cast(touch_id as string) as touch_id,
    cast(referral_id as string) as referral_id,
    cast(channel as string) as channel,
    cast(campaign as string) as campaign,
    cast(touched_at as timestamp) as touched_at,
    _load_id,
    _row_hash,
    _line
from deduped
