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
claim_clinic as (
    select
        c.claim_id,
        coalesce(x.clinic_id, c.clinic_id) as clinic_id,
        l.episode_id
    from {{ ref('stg_raw__claims') }} as c
    left join {{ ref('int_visit_links') }} as l on l.source = 'claims' and c.claim_id = l.row_id
    left join {{ ref('int_clinic_crosswalk') }} as x on c.clinic_id = x.source_id
    {%- if inc %}
        where c.claim_id in (select r.claim_id from remits as r)
    {%- endif %}
),

charge_clinic as (
    select
        claim_id,
        min(clinic_id) as clinic_id,
        min(episode_id) as episode_id
    from {{ ref('int_charge_lines_classified') }}
    where
        claim_id is not null and clinic_id is not null
        {%- if inc %}
            and claim_id in (select r.claim_id from remits as r)
        {%- endif %}
    group by claim_id
)

select
    r.remit_id,
    r.claim_id,
    r.payer_id,
    r.event_type,
    r.event_at,
    r.amount_usd,
    coalesce(cc.clinic_id, ch.clinic_id, 'unattributed') as clinic_id,
    coalesce(cc.episode_id, ch.episode_id) as episode_id,
    cc.claim_id is not null as claim_known,
    case
        when cc.claim_id is not null then 'claim'
        when ch.clinic_id is not null then 'charge_lines'
        else 'unattributed'
    end as clinic_source
from {{ 'remits' if inc else ref('int_remittances_linked') }} as r
left join claim_clinic as cc using (claim_id)
left join charge_clinic as ch using (claim_id)
