-- One row per clinic x month of the first denial x CARC of the first denial: denied claims, the dollars
-- denied, how many were paid after all (appeal or resubmission) and what was written off. The reason and its
-- group come from the CARC list (seed carc = ingestion/codes/carc.csv); a code missing from the list keeps
-- its rows under group 'unknown'. Every denied claim of the claims mart is in exactly one row.
select
    c.clinic_id,
    cast(date_trunc('month', c.denied_at) as date) as month,
    coalesce(c.denial_carc, 'unknown') as denial_carc,
    coalesce(any_value(r.category), 'unknown') as carc_group,
    coalesce(any_value(r.description), 'Reason code not in the CARC list') as carc_description,
    count(*) as denied_claims,
    cast(sum(coalesce(c.denied_usd, 0)) as double) as denied_usd,
    count(*) filter (where c.payer_paid_usd > 0) as paid_after_denial_claims,
    cast(sum(c.payer_paid_usd) as double) as paid_after_denial_usd,
    count(*) filter (where c.is_denial_written_off) as written_off_claims,
    cast(sum(c.write_off_usd) filter (where c.is_denial_written_off) as double) as written_off_usd
from {{ ref('claims') }} as c
left join {{ ref('carc') }} as r on c.denial_carc = r.code
where c.is_denied and c.denied_at is not null
group by c.clinic_id, cast(date_trunc('month', c.denied_at) as date), coalesce(c.denial_carc, 'unknown')
