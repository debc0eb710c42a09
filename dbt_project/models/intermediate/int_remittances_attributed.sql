-- One row per landed remittance event (after the latest-wins dedup) with the clinic its money belongs to, so
-- cash is never lost in a join: the claim's clinic; when the claim row itself was quarantined, the clinic of
-- the claim's charge lines; else the explicit clinic 'unattributed'. Practice-wide totals (practice_kpis
-- clinic 'ALL') therefore include every dollar that landed; claim_known says whether the claims mart has it.
-- episode_id comes the same way (claim, else its charge lines; as carried or linked, int_visit_links), so an
-- episode's collected revenue keeps it too.
-- Incremental (macros/incremental.sql, remittances_attributed_scope): recomputes the remittances recomputed upstream
-- and those of every claim whose row or charge lines were, reading only their claims.
-- depends_on: {{ source('raw', 'clinics') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('remittances_attributed', ['remit_id'])[0] }}",
        "{{ scope_hooks('remittances_attributed', ['remit_id'])[1] }}"
    ]
) }}
{% set inc = is_incremental() %}

with {% if inc -%}
    remits as (
        select r.*
        from {{ ref('int_remittances_linked') }} as r
        where r.remit_id in (select s.remit_id from {{ scope_relation() }} as s)
    ),

{% endif -%}
-- Shape: each claim's own clinic, its linked episode and its charge lines' clinic and episode are stacked
-- (union all) and grouped by claim once (an aggregate spills), then the remittances join that one per-claim table.
-- Joining claims to their links, then the remittances to those and to a charge-line aggregate, held several
-- 20 M-row hash tables at once and ran a 900-clinic build out of memory under the 4 GB budget (docs/scale.md).
claim_parts as (
    select
        c.claim_id,
        true as is_claim_row,
        coalesce(x.clinic_id, c.clinic_id) as claim_clinic_id,
        cast(null as string) as claim_episode_id,
        cast(null as string) as line_clinic_id,
        cast(null as string) as line_episode_id
    from {{ ref('stg_raw__claims') }} as c
    left join {{ ref('int_clinic_crosswalk') }} as x on c.clinic_id = x.source_id
    {%- if inc %}
        where c.claim_id in (select r.claim_id from remits as r)
    {%- endif %}
    union all
    select
        l.row_id as claim_id,
        false as is_claim_row,
        null as claim_clinic_id,
        l.episode_id as claim_episode_id,
        null as line_clinic_id,
        null as line_episode_id
    from {{ ref('int_visit_links') }} as l
    where
        l.source = 'claims'
        {%- if inc %}
            and l.row_id in (select r.claim_id from remits as r)
        {%- endif %}
    union all
    select
        claim_id,
        false as is_claim_row,
        null as claim_clinic_id,
        null as claim_episode_id,
        clinic_id as line_clinic_id,
        episode_id as line_episode_id
    from {{ ref('int_charge_lines_classified') }}
    where
        claim_id is not null and clinic_id is not null
        {%- if inc %}
            and claim_id in (select r.claim_id from remits as r)
        {%- endif %}
),

claims as (
    select
        claim_id,
        bool_or(is_claim_row) as claim_known,
        -- one claim row and one claims link per claim (both keyed by it): max() is that row's value
        max(claim_clinic_id) as claim_clinic_id,
        max(claim_episode_id) as claim_episode_id,
        min(line_clinic_id) as line_clinic_id,
        min(line_episode_id) as line_episode_id
    from claim_parts
    group by claim_id
)

select
    r.remit_id,
    r.claim_id,
    r.payer_id,
    r.event_type,
    r.event_at,
    r.amount_usd,
    coalesce(case when c.claim_known then c.claim_clinic_id end, c.line_clinic_id, 'unattributed') as clinic_id,
    coalesce(case when c.claim_known then c.claim_episode_id end, c.line_episode_id) as episode_id,
    coalesce(c.claim_known, false) as claim_known,
    case
        when c.claim_known then 'claim'
        when c.line_clinic_id is not null then 'charge_lines'
        else 'unattributed'
    end as clinic_source
from {{ 'remits' if inc else ref('int_remittances_linked') }} as r
left join claims as c using (claim_id)
