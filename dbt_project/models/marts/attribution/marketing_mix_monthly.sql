-- One row per clinic x month x marketing channel: the spend reported for it (0 where none was) and the marketing
-- leads received through it. The input of the marketing-mix model (ml/mmm.py), which needs spend per clinic
-- (attribution_roi sums it over the practice) to see incrementality across clinics and months.
with spend as (
    select * from {{ ref('int_marketing_spend_monthly') }}
),

leads as (
    select
        clinic_id,
        channel,
        cast(date_trunc('month', received_at) as date) as month,
        count(*) as leads
    from {{ ref('referral_funnel') }}
    where source_type = 'marketing' and channel is not null and clinic_id is not null and received_at is not null
    group by all
)

select
    coalesce(s.clinic_id, l.clinic_id) as clinic_id,
    coalesce(s.month, l.month) as month,
    coalesce(s.channel, l.channel) as channel,
    coalesce(s.spend_usd, 0) as spend_usd,
    coalesce(l.leads, 0) as leads
from spend as s
full outer join leads as l
    on s.clinic_id = l.clinic_id and s.month = l.month and s.channel = l.channel
