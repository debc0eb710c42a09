-- Which sources this build holds: one row per ingestion contract, loaded or not. The app reads it to tell a page
-- whose inputs were never loaded ("Load a scheduling export (scheduling_events) to see ...") from a page whose
-- filters select nothing, without opening raw.duckdb. Rows come from staging (deduplicated, whatever the file
-- format: CSV, FHIR or X12), files from the load audit.
{% set staged = {
    'authorizations': 'stg_raw__authorizations',
    'charges': 'stg_raw__charges',
    'claims': 'stg_raw__claims',
    'clinics': 'stg_raw__clinics',
    'documentation_events': 'stg_raw__documentation_events',
    'intake_events': 'stg_raw__intake_events',
    'marketing_spend': 'stg_raw__marketing_spend_months',
    'marketing_touches': 'stg_raw__marketing_touches',
    'patients': 'stg_raw__patients',
    'payers': 'stg_raw__payers',
    'referring_physicians': 'stg_raw__referring_physicians',
    'remittances': 'stg_raw__remittances',
    'scheduling_events': 'stg_raw__scheduling_events',
    'therapists': 'stg_raw__therapists',
} %}
with staged as (
    {% for src, model in staged.items() %}
        select
            '{{ src }}' as source,
            count(*) as rows_in_build
        from {{ ref(model) }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

loads as (
    select
        source,
        count(*) filter (where status = 'loaded') as files_loaded,
        coalesce(sum(rows_landed) filter (where status = 'loaded'), 0) as rows_landed,
        count(*) filter (where status in ('refused', 'failed')) as files_refused,
        max(finished_at) filter (where status = 'loaded') as last_loaded_at
    from {{ ref('stg_raw__loads') }}
    group by source
)

select
    s.source,
    s.rows_in_build > 0 as is_loaded,
    s.rows_in_build,
    coalesce(l.files_loaded, 0) as files_loaded,
    coalesce(l.rows_landed, 0) as rows_landed,
    coalesce(l.files_refused, 0) as files_refused,
    l.last_loaded_at
from staged as s
left join loads as l using (source)
