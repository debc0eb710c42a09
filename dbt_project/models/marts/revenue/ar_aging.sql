-- One row per clinic x payer x A/R age bucket at as_of: the open claims (claims.ar_age_bucket other than
-- 'closed') and what is still owed on them, by the insurer and by the patient. Every open claim lands in
-- exactly one row, so the buckets add up to the open A/R of the claims mart (a claim with no payer on file
-- goes to payer 'unknown' rather than vanishing).
select
    c.clinic_id,
    coalesce(c.payer_id, 'unknown') as payer_id,
    coalesce(c.payer_class, 'unknown') as payer_class,
    c.ar_age_bucket,
    case c.ar_age_bucket
        when '0-30' then 1
        when '31-60' then 2
        when '61-90' then 3
        when '91-120' then 4
        else 5
    end as bucket_order,
    count(*) as open_claims,
    cast(sum(c.billed_usd) as double) as billed_usd,
    cast(sum(c.insurance_balance_usd) as double) as insurance_balance_usd,
    cast(sum(c.patient_balance_usd) as double) as patient_balance_usd,
    cast(sum(c.insurance_balance_usd + c.patient_balance_usd) as double) as open_balance_usd
from {{ ref('claims') }} as c
where c.ar_age_bucket <> 'closed'
group by all
