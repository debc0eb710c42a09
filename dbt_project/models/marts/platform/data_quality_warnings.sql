-- Warning-level data-quality flags on LANDED rows, one row per source x load x column x rule: a code that is not
-- in the code list the contract names (ingestion/codes/<list>.csv, built as a seed). Unlike a quarantine, the row
-- is kept and counts in every figure: a payer's new CARC or a CPT code newer than our list must not drop money.
-- Counted on the current (latest) version of each row, so a corrected re-send clears its warning.
with flagged as (
    select
        'charges' as source,
        c._load_id as load_id,
        'cpt_code' as column_name,
        'cpt' as code_list,
        c.cpt_code as code
    from {{ ref('stg_raw__charges') }} as c
    where c.cpt_code is not null and c.cpt_code not in (select k.code from {{ ref('cpt') }} as k)

    union all

    select
        'remittances' as source,
        r._load_id as load_id,
        'carc_code' as column_name,
        'carc' as code_list,
        r.carc_code as code
    from {{ ref('stg_raw__remittances') }} as r
    where r.carc_code is not null and r.carc_code not in (select k.code from {{ ref('carc') }} as k)
)

select
    f.source,
    f.load_id,
    l.file,
    f.column_name,
    'unknown_code' as rule,
    'warning' as severity,
    f.code_list,
    count(*) as rows,
    count(distinct f.code) as distinct_codes
from flagged as f
left join {{ ref('stg_raw__loads') }} as l on f.load_id = l.load_id
group by f.source, f.load_id, l.file, f.column_name, f.code_list
