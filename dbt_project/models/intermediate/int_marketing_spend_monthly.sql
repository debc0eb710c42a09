-- Reported marketing spend per clinic, channel and calendar month: the one place spend is put on the monthly grain
-- (the practice KPIs, attribution ROI and the marketing-mix model aggregate from here).
select
    clinic_id,
    channel,
    cast(date_trunc('month', month) as date) as month,
    sum(spend_usd) as spend_usd
from {{ ref('stg_raw__marketing_spend_months') }}
group by all
