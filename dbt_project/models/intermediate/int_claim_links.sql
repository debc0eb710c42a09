-- The claim rule, written once: one row per charge line and remittance event (latest versions) with the claim it
-- belongs to. A carried claim_id is kept as it is; one a format cannot carry (an EMR charge, a WebPT patient
-- payment) is inferred, never guessed (docs/architecture.md, "Linking"):
--   charge       the claim of the same person (int_patient_crosswalk) with the same date of service; with several,
--                the one of the line's episode (as carried or linked, int_visit_links); still several, or none ->
--                left unlinked.
--   remittance   the claim of the payment's episode (the claim's episode as carried or linked) and date of
--                service; several or none -> left unlinked (the cash still counts in the practice's totals).
-- A remittance's carried claim id that names no claim but is one claim's own number (claim_number: a payer's FHIR
-- ClaimResponse naming the claim by identifier) is that claim (claim_link claim_number).
-- Every row keeps its grain (a left join back onto the source row); unlinked_reason says why a claim is missing
-- and marts.link_health counts them.
-- Incremental (macros/incremental.sql, claim_links_scope): recomputes the rows whose claim may have changed, reading
-- only the claims of their dates; the scope (with each row's old claim) is kept for the models that read this one.
-- depends_on: {{ source('raw', 'charges') }} {{ source('raw', 'remittances') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('claim_links', ['source', 'row_id'])[0] }}",
        "{{ scope_hooks('claim_links', ['source', 'row_id'])[1] }}"
    ]
) }}
{% set inc = is_incremental() %}

with xw as (
    select
        pid,
        person_id
    from {{ ref('int_patient_crosswalk') }}
),

-- claim numbers naming exactly one claim and no claim id (an id always wins over a number)
claim_numbers as (
    select
        n.claim_number,
        min(n.claim_id) as claim_id
    from {{ ref('stg_raw__claims') }} as n
    left join {{ ref('stg_raw__claims') }} as i on n.claim_number = i.claim_id
    where n.claim_number is not null and i.claim_id is null
    group by n.claim_number
    having count(*) = 1
),

src as (
    select
        'charges' as source,
        c.charge_id as row_id,
        c.claim_id,
        x.person_id,
        c.service_date,
        l.episode_id,
        false as by_claim_number
    from {{ ref('stg_raw__charges') }} as c
    left join xw as x on c.patient_id = x.pid
    left join {{ ref('int_visit_links') }} as l on l.source = 'charges' and c.charge_id = l.row_id
    {%- if inc %}
        where c.charge_id in (
                select k.row_id from {{ scope_relation() }} as k
                where k.source = 'charges'
            )
    {%- endif %}
    union all
    select
        'remittances' as source,
        r.remit_id as row_id,
        coalesce(n.claim_id, r.claim_id) as claim_id,
        null as person_id,
        r.service_date,
        r.episode_id,
        n.claim_id is not null as by_claim_number
    from {{ ref('stg_raw__remittances') }} as r
    left join claim_numbers as n on r.claim_id = n.claim_number
    {%- if inc %}
        where r.remit_id in (
                select k.row_id from {{ scope_relation() }} as k
                where k.source = 'remittances'
            )
    {%- endif %}
),

claims as (
    select
        c.claim_id,
        x.person_id,
        c.service_date,
        l.episode_id
    from {{ ref('stg_raw__claims') }} as c
    left join xw as x on c.patient_id = x.pid
    left join {{ ref('int_visit_links') }} as l on l.source = 'claims' and c.claim_id = l.row_id
    {%- if inc %}
        -- only rows without a claim id look for candidates (most carry one: then no claim is read at all)
        where c.service_date in (
                select r.service_date from src as r
                where r.claim_id is null
            )
    {%- endif %}
),

-- candidate claims of rows without a claim id: a charge by person + date, a payment by episode + date
candidates as (
    select
        r.source,
        r.row_id,
        count(*) as claims_on_date,
        any_value(c.claim_id) as any_claim_id,
        count(*) filter (where r.episode_id = c.episode_id) as claims_in_episode,
        any_value(c.claim_id) filter (where r.episode_id = c.episode_id) as episode_claim_id
    from src as r
    inner join claims as c on r.person_id = c.person_id and r.service_date = c.service_date
    where r.source = 'charges' and r.claim_id is null
    group by r.source, r.row_id
    union all
    select
        r.source,
        r.row_id,
        count(*) as claims_on_date,
        any_value(c.claim_id) as any_claim_id,
        count(*) as claims_in_episode,
        any_value(c.claim_id) as episode_claim_id
    from src as r
    inner join claims as c on r.episode_id = c.episode_id and r.service_date = c.service_date
    where r.source = 'remittances' and r.claim_id is null
    group by r.source, r.row_id
)

select
    r.source,
    r.row_id,
    case
        when r.claim_id is not null then r.claim_id
        when c.claims_on_date = 1 then c.any_claim_id
        when c.claims_in_episode = 1 then c.episode_claim_id
    end as claim_id,
    case
        when r.by_claim_number then 'claim_number'
        when r.claim_id is not null then 'source'
        when c.claims_on_date = 1 and r.source = 'charges' then 'patient_date'
        when c.claims_on_date = 1 then 'episode_date'
        when c.claims_in_episode = 1 then 'patient_date_episode'
        else 'unlinked'
    end as claim_link,
    case
        when r.claim_id is not null or c.claims_on_date = 1 or c.claims_in_episode = 1 then null
        when c.claims_on_date > 1 then 'several_claims_on_date'
        else 'no_claim_on_date'
    end as unlinked_reason
from src as r
left join candidates as c on r.source = c.source and r.row_id = c.row_id
