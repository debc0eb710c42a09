-- Warning-level data-quality flags on LANDED rows, one row per source x load x column x rule. Unlike a quarantine,
-- the row is kept and counts in every figure. Two rules:
-- unknown_code: a code that is not in the code list the contract names (ingestion/codes/<list>.csv, built as a
--   seed): a payer's new CARC or a CPT code newer than our list must not drop money.
-- possible_resend: a referral received within 7 days after another one for the same patient from the same source
--   (the referring physician, else the source type and channel) under another referral id: a re-sent fax or a
--   second entry of one referral, counted twice in the funnel and left open; or a genuine second referral. Flagged
--   on the later one (its received event's load) for the intake team to merge or close, never merged here.
-- Counted on the current (latest) version of each row, so a corrected re-send clears its warning.
with received as (
    select
        referral_id,
        patient_id,
        event_at,
        _load_id,
        coalesce(referring_physician_id, concat(coalesce(source_type, ''), '/', coalesce(channel, ''))) as source_key
    from {{ ref('stg_raw__intake_events') }}
    where event_type = 'received' and patient_id is not null and referral_id is not null
),

flagged as (
    select
        'charges' as source,
        c._load_id as load_id,
        'cpt_code' as column_name,
        'unknown_code' as rule,
        'cpt' as code_list,
        c.cpt_code as code
    from {{ ref('stg_raw__charges') }} as c
    where c.cpt_code is not null and c.cpt_code not in (select k.code from {{ ref('cpt') }} as k)

    union all

    select
        'remittances' as source,
        r._load_id as load_id,
        'carc_code' as column_name,
        'unknown_code' as rule,
        'carc' as code_list,
        r.carc_code as code
    from {{ ref('stg_raw__remittances') }} as r
    where r.carc_code is not null and r.carc_code not in (select k.code from {{ ref('carc') }} as k)

    union all

    select distinct
        'intake_events' as source,
        later._load_id as load_id,
        'referral_id' as column_name,
        'possible_resend' as rule,
        cast(null as string) as code_list,
        later.referral_id as code
    from received as later
    inner join received as earlier
        on
            later.patient_id = earlier.patient_id
            and later.source_key = earlier.source_key
            and later.referral_id <> earlier.referral_id
            and (
                later.event_at > earlier.event_at
                or (later.event_at = earlier.event_at and later.referral_id > earlier.referral_id)
            )
            and {{ day_diff('cast(earlier.event_at as date)', 'cast(later.event_at as date)') }} <= 7
)

select
    f.source,
    f.load_id,
    l.file,
    f.column_name,
    f.rule,
    'warning' as severity,
    f.code_list,
    count(*) as rows,
    count(distinct f.code) as distinct_codes
from flagged as f
left join {{ ref('stg_raw__loads') }} as l on f.load_id = l.load_id
group by f.source, f.load_id, l.file, f.column_name, f.rule, f.code_list
