-- Money and adjudication events per claim (835 remittance, patient payments, write-offs). Dollar movements:
-- payer_payment, contractual_adjustment, patient_responsibility (moves the balance from payer to patient),
-- patient_payment, write_off. A denial records the denied amount with its CARC code and moves no money; a denied
-- claim later paid on appeal gets a payer_payment, an unrecovered one a write_off. Insurance balance = billed -
-- payer_payment - contractual_adjustment - patient_responsibility - write_off; patient balance =
-- patient_responsibility - patient_payment.
-- Latest version per natural key (remit_id), by event_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest). Which system's payments of a claim
-- count is decided after a payment without claim_id is linked to its claim (int_remittances_linked); rename and
-- cast only.
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('remittances', 'remit_id') }}"
) }}

with deduped as (
    {{ merge_latest(
        'remittances', [
            'remit_id', 'claim_id', 'payer_id', 'event_type', 'event_at', 'amount_usd', 'group_code',
            'carc_code', 'check_number', 'episode_id', 'service_date', '_load_id', '_row_hash', '_line'
        ],
        ['remit_id'],
        'event_at'
    ) }}
)

select
    cast(remit_id as string) as remit_id,
    cast(claim_id as string) as claim_id,
    cast(payer_id as string) as payer_id,
    cast(event_type as string) as event_type,
    cast(event_at as timestamp) as event_at,
    cast(amount_usd as decimal(18, 2)) as amount_usd,
    cast(group_code as string) as group_code,
    cast(carc_code as string) as carc_code,
    cast(check_number as string) as check_number,
    cast(episode_id as string) as episode_id,
    cast(service_date as date) as service_date,
    _load_id,
    _row_hash,
    _line
from deduped
