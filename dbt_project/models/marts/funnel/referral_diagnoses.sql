-- One row per clinic x month received x ICD-10 category (first three characters) of the referral's
-- diagnosis: referrals received up to as_of, evaluated, converted (signed initial evaluation, the WebPT
-- conversion KPI) and still open. The diagnosis is the referral's own (intake), else the evaluation's primary
-- diagnosis of its episode; neither -> category 'none', so every referral is in exactly one row.
-- icd10_chapter is the ICD-10-CM chapter the category falls in (by letter and number range).
with k as (
    select as_of from {{ ref('int_clocks_resolved') }}
),

refs as (
    select
        f.clinic_id,
        cast(date_trunc('month', f.received_at) as date) as month,
        coalesce(f.icd10_code, e.icd10_primary) as icd10_code,
        case
            when f.icd10_code is not null then 'referral'
            when e.icd10_primary is not null then 'evaluation'
            else 'none'
        end as diagnosis_source,
        f.evaluated_at is not null as is_evaluated,
        f.converted_webpt,
        -- a secondary referral is never open (referral_funnel.is_open): its episode is another referral's
        f.exit_stage is null and f.evaluated_at is null and not f.is_secondary_referral as is_open
    from {{ ref('referral_funnel') }} as f
    cross join k
    left join {{ ref('episodes') }} as e using (episode_id)
    where f.received_at <= k.as_of
),

coded as (
    select
        *,
        coalesce(upper(left(icd10_code, 3)), 'none') as icd10_category,
        upper(left(icd10_code, 1)) as letter,
        try_cast(substr(icd10_code, 2, 2) as integer) as num
    from refs
)

select
    clinic_id,
    month,
    icd10_category,
    case
        when letter is null then 'No diagnosis on file'
        when letter in ('A', 'B') then 'Infectious and parasitic diseases'
        when letter = 'C' or (letter = 'D' and num <= 49) then 'Neoplasms'
        when letter = 'D' then 'Blood and immune disorders'
        when letter = 'E' then 'Endocrine, nutritional and metabolic diseases'
        when letter = 'F' then 'Mental and behavioral disorders'
        when letter = 'G' then 'Nervous system'
        when letter = 'H' and num <= 59 then 'Eye and adnexa'
        when letter = 'H' then 'Ear and mastoid process'
        when letter = 'I' then 'Circulatory system'
        when letter = 'J' then 'Respiratory system'
        when letter = 'K' then 'Digestive system'
        when letter = 'L' then 'Skin and subcutaneous tissue'
        when letter = 'M' then 'Musculoskeletal system and connective tissue'
        when letter = 'N' then 'Genitourinary system'
        when letter = 'O' then 'Pregnancy and childbirth'
        when letter = 'P' then 'Perinatal conditions'
        when letter = 'Q' then 'Congenital conditions'
        when letter = 'R' then 'Symptoms and abnormal findings'
        when letter in ('S', 'T') then 'Injury, poisoning and external causes'
        when letter in ('V', 'W', 'X', 'Y') then 'External causes of morbidity'
        when letter = 'Z' then 'Factors influencing health status'
        else 'Special purposes'
    end as icd10_chapter,
    count(*) as referrals,
    count(*) filter (where diagnosis_source = 'referral') as coded_on_referral,
    count(*) filter (where is_evaluated) as evaluated,
    count(*) filter (where converted_webpt) as converted,
    count(*) filter (where is_open) as still_open
from coded
group by all
