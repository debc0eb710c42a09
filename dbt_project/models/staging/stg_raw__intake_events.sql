-- Leads and referrals and everything the intake team does with them, as events. A `received` event opens a
-- referral (or lead) and carries its source; later events record outreach and the intake outcome.
-- Latest version per natural key (event_id), by event_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('intake_events', 'event_id') }}"
) }}

with deduped as (
    {{ merge_latest(
        'intake_events', [
            'event_id', 'referral_id', 'patient_id', 'clinic_id', 'event_type', 'event_at', 'intake_kind',
            'source_type', 'referring_physician_id', 'channel', 'payer_id', 'icd10_code', 'outreach_method',
            'outreach_outcome', 'reason', 'recorded_by', '_load_id', '_row_hash', '_line'
        ],
        ['event_id'],
        'event_at'
    ) }}
)

select
    cast(event_id as string) as event_id,
    cast(referral_id as string) as referral_id,
    cast(patient_id as string) as patient_id,
    cast(clinic_id as string) as clinic_id,
    cast(event_type as string) as event_type,
    cast(event_at as timestamp) as event_at,
    cast(intake_kind as string) as intake_kind,
    cast(source_type as string) as source_type,
    cast(referring_physician_id as string) as referring_physician_id,
    cast(channel as string) as channel,
    cast(payer_id as string) as payer_id,
    cast(icd10_code as string) as icd10_code,
    cast(outreach_method as string) as outreach_method,
    cast(outreach_outcome as string) as outreach_outcome,
    cast(reason as string) as reason,
    cast(recorded_by as string) as recorded_by,
    _load_id,
    _row_hash,
    _line
from deduped
