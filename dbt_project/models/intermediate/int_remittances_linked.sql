-- One row per remittance event that counts, with its claim as carried or linked (int_claim_links). Each kind of money
-- (event_type) of one claim comes from the one most authoritative source system that reports that kind for it (var
-- source_precedence): an 835, a WebPT front-desk payment and the practice's ledger tell the same money, so cash is
-- never counted twice; but a ledger of front-desk copays does not hide the insurer's payment and adjustments that
-- only the 835 carries (one system per claim dropped 60% of payer cash for such a practice).
-- The rule runs after linking, because a WebPT payment names its claim only through case + visit date.
-- The payer as our id when an 835 named it by X12 payer id (int_payer_crosswalk). Rows
-- still without a claim are all kept (their cash counts in the practice's totals, link_health counts them).
-- Incremental (macros/incremental.sql, remittances_linked_scope): recomputes every remittance of each claim a
-- re-linked or new remittance was or is linked to, so the one-system-per-claim-and-type window sees all of the
-- claim's rows.
-- depends_on: {{ source('raw', 'payers') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('remittances_linked', ['remit_id'])[0] }}",
        "{{ scope_hooks('remittances_linked', ['remit_id'])[1] }}"
    ]
) }}
select
    {{ star_replace(ref('stg_raw__remittances'), 'r', {
        'claim_id': 'k.claim_id', 'payer_id': 'coalesce(xp.payer_id, r.payer_id)'
    }) }},  -- noqa: AM04
    k.claim_link,
    k.unlinked_reason,
    coalesce(s.system_rank, 1) as system_rank
from {{ in_scope(ref('stg_raw__remittances'), {'remit_id': 'remit_id'}) }} as r
inner join {{ ref('int_claim_links') }} as k on k.source = 'remittances' and r.remit_id = k.row_id
left join {{ ref('int_payer_crosswalk') }} as xp on r.payer_id = xp.source_id
left join {{ source_system_ranks() }} as s on r._load_id = s.load_id
qualify
    k.claim_id is null
    or coalesce(s.system_rank, 1) = min(coalesce(s.system_rank, 1)) over (partition by k.claim_id, r.event_type)
