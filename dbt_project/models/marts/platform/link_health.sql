-- How well this build's rows are tied together, for Data health: one row per source x link status x reason, with
-- rows and money. Charges, claims and notes come from the linking rule (int_visit_links): 'carried' (the export
-- had the ids), 'linked' (an id was inferred), 'unlinked' (a link is missing; reason says why). Remittances are
-- 'carried' / 'linked' (int_claim_links: a payment without claim_id, by episode + date of service) when their claim
-- is in the build and 'unlinked' (no_claim_on_date, several_claims_on_date, claim_not_loaded) when it is not: that
-- cash still counts in the practice totals (int_remittances_attributed), it only cannot be shown against a claim.
-- 'charge_claims' is each charge line's claim (int_claim_links: carried, or by patient + date of service).
-- A charge line's links and amount come from int_charge_lines_classified (one row per line, carrying both rules'
-- results): no join of every line back to staging.
with lines as (
    select
        charge_usd,
        appointment_link,
        episode_link,
        unlinked_reason,
        claim_link,
        claim_unlinked_reason
    from {{ ref('int_charge_lines_classified') }}
),

visit_rows as (
    select
        'charges' as source,
        appointment_link,
        episode_link,
        unlinked_reason,
        charge_usd as amount_usd
    from lines
    union all
    select
        l.source,
        l.appointment_link,
        l.episode_link,
        l.unlinked_reason,
        cl.billed_usd as amount_usd
    from {{ ref('int_visit_links') }} as l
    left join {{ ref('stg_raw__claims') }} as cl on l.source = 'claims' and l.row_id = cl.claim_id
    where l.source <> 'charges'
),

visit_links as (
    select
        source,
        case
            when unlinked_reason is not null then 'unlinked'
            when
                appointment_link like 'patient_date%' or appointment_link = 'claim_lines'
                or episode_link in ('appointment', 'episode_span')
                then 'linked'
            else 'carried'
        end as link_status,
        coalesce(unlinked_reason, '(none)') as reason,
        amount_usd
    from visit_rows
),

charge_claims as (
    select
        'charge_claims' as source,
        case
            when claim_unlinked_reason is not null then 'unlinked'
            when claim_link = 'source' then 'carried'
            else 'linked'
        end as link_status,
        coalesce(claim_unlinked_reason, '(none)') as reason,
        charge_usd as amount_usd
    from lines
),

remits as (
    select
        'remittances' as source,
        case
            when l.unlinked_reason is not null or not a.claim_known then 'unlinked'
            when l.claim_link = 'source' then 'carried'
            else 'linked'
        end as link_status,
        coalesce(l.unlinked_reason, case when not a.claim_known then 'claim_not_loaded' end, '(none)') as reason,
        case when a.event_type in ('payer_payment', 'patient_payment') then a.amount_usd else 0 end as amount_usd
    from {{ ref('int_remittances_attributed') }} as a
    inner join {{ ref('int_remittances_linked') }} as l using (remit_id)
),

all_rows as (
    select * from visit_links
    union all
    select * from charge_claims
    union all
    select * from remits
)

select
    source,
    link_status,
    reason,
    count(*) as rows,
    sum(amount_usd) as amount_usd
from all_rows
group by source, link_status, reason
