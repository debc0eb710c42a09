-- One row per remittance event that counts, with its claim as carried or linked (int_claim_links). Each kind of money
-- (event_type) a payer paid or adjusted on one claim comes from the one most authoritative source system (var
-- source_precedence) that reports that kind from that payer for it: an 835, a WebPT front-desk payment and the
-- practice's ledger tell the same money, so cash is never counted twice; but a ledger of front-desk copays does not
-- hide the insurer's payments and adjustments that only the 835 carries (one system per claim dropped 60% of payer
-- cash for such a practice), and a secondary payer's payment in the ledger does not hide the primary's 835 (nor the
-- other way round). Payers are told apart only when both are in the payers file, by their normalised name (two
-- systems' ids for one payer are one payer); a row whose payer is not known there (a patient's payment, a ledger that
-- names no payer, an X12 payer id no payer matches) could be any payer's: it competes with every payer's rows of its
-- kind, as before, so the same money told by two systems never counts twice.
-- A reversal (835 CLP02 = 22) of a denial counts only what cancels money the denial landed: its payment and, when
-- the denial landed a patient share, its patient responsibility. A denial's contractual adjustments never land
-- (ingestion x12._denied_adjustments: the denial states the denied amount), so the reversal's, negated, reversed
-- nothing: counted, a denial reversed on appeal showed a negative adjustment and stayed open after the appeal paid
-- it. The reader cannot tell a denial's reversal from the reversal alone (the original may be in another file): here
-- each X12 claim payment (CLP: the 835 rows of one remit-id stem) whose landed money sums below zero (a reversal
-- negates every amount; an original's payment and adjustments add up to its billed charges) is paired with the
-- latest earlier CLP of the same claim and payer that is not a reversal, the one it reverses.
-- The rules run after linking, because a WebPT payment names its claim only through case + visit date.
-- The payer as our id when an 835 named it by X12 payer id (int_payer_crosswalk). Rows
-- still without a claim are all kept (their cash counts in the practice's totals, link_health counts them).
-- A practice with one source system has no system to choose: the choice compiles to a constant true (macros/ptpulse.sql
-- several_source_systems), so the engine computes none of its windows (most of this model's cost).
-- Incremental (macros/incremental.sql, remittances_linked_scope): recomputes every remittance of each claim a
-- re-linked or new remittance was or is linked to, so the rules' windows see all of the claim's rows.
-- depends_on: {{ source('raw', 'payers') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('remittances_linked', ['remit_id'])[0] }}",
        "{{ scope_hooks('remittances_linked', ['remit_id'])[1] }}"
    ]
) }}
{%- set several_systems = several_source_systems() %}

with linked as (
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
),

-- the rows of each X12 claim payment: remit ids `x12:835/<payment>/<CLP01>/<n>/<row>` (ingestion x12._emit_835)
clp_rows as (
    select
        remit_id,
        claim_id,
        payer_id,
        event_type,
        amount_usd,
        event_at,
        _load_id,
        _line,
        remit_id like '%/prior_share' as is_prior_share,
        regexp_extract(remit_id, '^(x12:835/.+)/(payment|denial|prior_share|cas/[0-9]+)$', 1) as clp_id
    from linked
    where claim_id is not null and remit_id like 'x12:835/%'
),

clps as (
    select
        claim_id,
        payer_id,
        clp_id,
        count(*) filter (where event_type = 'denial') > 0 as is_denial,
        count(*) filter (where event_type = 'patient_responsibility' and not is_prior_share) > 0 as has_patient_share,
        count(*) filter (where event_type = 'denial') = 0
        and coalesce(sum(amount_usd) filter (where event_type <> 'denial' and not is_prior_share), 0) < 0
            as is_reversal,
        row_number() over (
            partition by claim_id, payer_id order by min(event_at), min(_load_id), min(_line), clp_id
        ) as clp_seq
    from clp_rows
    where clp_id <> ''
    group by claim_id, payer_id, clp_id
),

-- each reversal with the CLP it reverses: the latest earlier one of its claim and payer that is not a reversal
reversed as (
    select
        r.clp_id,
        o.is_denial as reverses_denial,
        o.has_patient_share as reversed_patient_share
    from (
        select
            *,
            max(case when not is_reversal then clp_seq end) over (
                partition by claim_id, payer_id order by clp_seq rows between unbounded preceding and 1 preceding
            ) as reversed_seq
        from clps
    ) as r
    inner join clps as o
        on r.claim_id = o.claim_id and r.payer_id is not distinct from o.payer_id and r.reversed_seq = o.clp_seq
    where r.is_reversal
),

-- a denial's reversal: its rows that cancel nothing the denial landed
cancels_nothing as (
    select c.remit_id
    from clp_rows as c
    inner join reversed as v on c.clp_id = v.clp_id
    where
        v.reverses_denial
        and (
            c.event_type = 'contractual_adjustment'
            or c.is_prior_share
            or (c.event_type = 'patient_responsibility' and not v.reversed_patient_share)
        )
),

counted as (
    select
        l.*,
        -- the payer as one key whatever id each system gives it; null when the payers file does not hold it
        nullif(upper({{ regexp_replace_all('p.payer_name', '[^A-Za-z0-9]', '') }}), '') as payer_key
    from linked as l
    left join cancels_nothing as n on l.remit_id = n.remit_id
    left join {{ ref('stg_raw__payers') }} as p on l.payer_id = p.payer_id
    where n.remit_id is null
),

ranked as (
    select
        c.*,
        min(c.system_rank) over (partition by c.claim_id, c.event_type) as kind_top_rank,
        min(c.system_rank) over (partition by c.claim_id, c.event_type, c.payer_key) as payer_top_rank,
        min(case when c.payer_key is null then c.system_rank end)
            over (partition by c.claim_id, c.event_type) as unknown_payer_top_rank
    from counted as c
)

select {{ star_except(['payer_key', 'kind_top_rank', 'payer_top_rank', 'unknown_payer_top_rank'], 'r') }}
from ranked as r
where
    -- one source system: nothing to choose (a constant true, so the engine computes none of the windows)
    {{ 'false' if several_systems else 'true' }}
    or r.claim_id is null
    -- a row of a payer the payers file does not hold competes with every row of its kind
    or (r.payer_key is null and r.system_rank = r.kind_top_rank)
    -- a known payer's: with that payer's rows and with the rows whose payer is not known
    or (
        r.payer_key is not null
        and r.system_rank = least(r.payer_top_rank, coalesce(r.unknown_payer_top_rank, r.system_rank))
    )
