-- Professional claims (837P) submitted to payers, one per visit. A corrected claim is re-sent with the same
-- claim_id and a later submitted_at.
-- Latest version per natural key (claim_id), by submitted_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only. A claim whose
-- latest version is a void keeps its row (status voided): marts count it as billed nowhere (int_claims_reconciled).
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('claims', 'claim_id') }}"
) }}

with deduped as (
    {{ merge_latest(
        'claims', [
            'claim_id', 'episode_id', 'patient_id', 'clinic_id', 'payer_id', 'service_date', 'submitted_at',
            'billed_usd', 'claim_number', 'status', '_load_id', '_row_hash', '_line'
        ],
        ['claim_id'],
        'submitted_at'
    ) }}
)

select
    cast(claim_id as string) as claim_id,
    cast(episode_id as string) as episode_id,
    cast(patient_id as string) as patient_id,
    cast(clinic_id as string) as clinic_id,
    cast(payer_id as string) as payer_id,
    cast(service_date as date) as service_date,
    cast(submitted_at as timestamp) as submitted_at,
    cast(billed_usd as decimal(18, 2)) as billed_usd,
    cast(claim_number as string) as claim_number,
    -- the latest version's status: voided (an 837P void, a FHIR Claim cancelled / entered-in-error), else submitted
    -- (empty in the file: CSV exports and the profiles carry none)
    coalesce(cast(status as string), 'submitted') as status,
    _load_id,
    _row_hash,
    _line
from deduped
