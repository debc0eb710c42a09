-- One row per clinic x day (from the clinic's first claim to as_of): open A/R at the end of the day and the
-- charges of the 90 days ending that day, for days in A/R. A/R moves up by billed charges on the service
-- date and down by payer payments, contractual adjustments, write-offs and patient payments on their dates.
with k as (
    select cast(as_of as date) as as_of_date from {{ ref('int_clocks_resolved') }}
),

claims as (
    select
        claim_id,
        clinic_id,
        service_date,
        billed_usd
    from {{ ref('int_claims_reconciled') }}
),

moves as (
    select
        clinic_id,
        service_date as d,
        sum(billed_usd) as billed,
        0 as resolved
    from claims
    group by all
    union all
    select
        c.clinic_id,
        cast(r.event_at as date),
        0,
        sum(r.amount_usd)
    from {{ ref('int_remittances_linked') }} as r
    inner join claims as c using (claim_id)
    where r.event_type in ('payer_payment', 'contractual_adjustment', 'write_off', 'patient_payment')
    group by all
),

daily as (
    select
        clinic_id,
        d,
        sum(billed) as billed,
        sum(resolved) as resolved
    from moves
    group by all
),

spine as (
    select
        c.clinic_id,
        {{ day_series('c.first_d', 'k.as_of_date') }} as d
    from (select
        clinic_id,
        min(d) as first_d
    from daily
    group by clinic_id) as c, k
)

select
    s.clinic_id,
    s.d as date_day,
    sum(coalesce(m.billed, 0) - coalesce(m.resolved, 0))
        over (partition by s.clinic_id order by s.d rows between unbounded preceding and current row) as ar_balance_usd,
    sum(coalesce(m.billed, 0))
        over (partition by s.clinic_id order by s.d rows between 89 preceding and current row) as charges_90d_usd
from spine as s
left join daily as m using (clinic_id, d)
