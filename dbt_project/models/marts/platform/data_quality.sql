-- One row per source x load x quarantine rule (rule '(none)' for a load that quarantined nothing), with the
-- load's counts and the source's freshness (latest landed load).
with q as (
    select
        load_id,
        rule,
        count(*) as rows
    from {{ ref('stg_raw__quarantined_rows') }}
    group by load_id, rule
),

fresh as (
    select
        source,
        max(finished_at) as source_last_loaded_at
    from {{ ref('stg_raw__loads') }}
    where status = 'loaded'
    group by source
)

select
    l.source,
    l.load_id,
    l.file,
    l.finished_at as loaded_at,
    l.status as load_status,
    coalesce(q.rule, '(none)') as rule,
    coalesce(q.rows, 0) as rows,
    l.rows_read,
    l.rows_landed,
    l.rows_quarantined,
    l.rows_duplicate,
    f.source_last_loaded_at,
    -- the load's own file name, which a message starts with, as '(file)': exporters name per-patient files after
    -- the patient (Synthea), and the de-identified twin keeps messages but never file names (the `file` column)
    replace(l.message, regexp_extract(l.file, '[^/]+$', 0), '(file)') as message
from {{ ref('stg_raw__loads') }} as l
left join q using (load_id)
left join fresh as f using (source)
