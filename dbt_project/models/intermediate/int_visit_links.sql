-- The linking rule, written once: one row per charge line, claim and clinical note (latest versions) with the
-- appointment and episode it belongs to. Ids the source carried are kept as they are; ids a format cannot carry
-- (X12 837P, FHIR, EMR exports) are inferred, never guessed (docs/architecture.md, "Linking"):
--   appointment  the completed appointment of the same person (int_patient_crosswalk) on the date of service;
--                with several, the one with the row's rendering therapist (compared by NPI when the therapists
--                file gives one); still several, the one of the row's own episode (an EMR charge carries its
--                case), then the one with both; still several (or none) -> left unlinked. A single
--                candidate links even under another therapist's name (a supervising PT bills for an assistant).
--                A claim takes the one appointment its charge lines carry or link to before trying its own date
--                (a claim carried its visit when its lines did: the claims contract has no appointment id). A
--                discharge summary is not expected to have a visit.
--   episode      the linked appointment's episode, else the episode of the same person whose span (first to last
--                dated row carrying its id: appointments, notes, charges, claims) holds the date of service;
--                several such spans (concurrent episodes) -> left unlinked.
-- Every row keeps its grain (one row per source row, never duplicated); unlinked_reason says why a link is missing
-- and marts.link_health counts them.
-- Incremental (macros/incremental.sql, visit_links_scope): recomputes the rows whose links may have changed, with
-- every row of their persons and every charge line of their claims as input, so each is what a full build gives.
-- Its scope (with each row's old person, date and episode) is kept until the build ends: the claim-side models
-- derive their scopes from it.
-- depends_on: {{ source('raw', 'charges') }} {{ source('raw', 'claims') }}
-- depends_on: {{ source('raw', 'documentation_events') }} {{ source('raw', 'scheduling_events') }}
-- depends_on: {{ source('raw', 'therapists') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('visit_links', ['source', 'row_id'])[0] }}",
        "{{ scope_hooks('visit_links', ['source', 'row_id'])[1] }}"
    ],
    post_hook="{{ drop_previous_crosswalk() }}"
) }}
{% set inc = is_incremental() %}

with xw as (
    select
        pid,
        person_id
    from {{ ref('int_patient_crosswalk') }}
),

therapist_npi as (
    select
        therapist_id,
        'npi:' || npi as therapist_key
    from {{ ref('stg_raw__therapists') }}
    where npi is not null
),

{# the rows the rule links, per source (macros/ptpulse.sql visit_link_rows) #}
{% set link_sources = [
    ('charges', 'stg_raw__charges', 'charge_id', 's.claim_id', 's.therapist_id', 's.appointment_id', 'true'),
    ('claims', 'stg_raw__claims', 'claim_id', 's.claim_id', 'null', 'null', 'true'),
    ('documentation_events', 'stg_raw__documentation_events', 'note_id', 'null', 's.therapist_id',
        's.appointment_id', "s.note_type <> 'discharge_summary'"),
] %}

{% if not inc -%}
    src as (
        {%- for b in link_sources %}
            {{ 'union all' if not loop.first }}
            {{ visit_link_rows(b) }}
        {%- endfor %}
    ),

{% else -%}
    scoped as (
        select
            r.source,
            r.row_id,
            x.person_id
        from (
            {%- for b in link_sources %}
                select
                    '{{ b[0] }}' as source,
                    s.{{ b[2] }} as row_id,
                    s.patient_id
                from {{ ref(b[1]) }} as s
                semi join {{ scope_relation() }} as k on k.source = '{{ b[0] }}' and s.{{ b[2] }} = k.row_id
                {%- if not loop.last %}
                    union all
                {%- endif %}
            {%- endfor %}
        ) as r
        left join xw as x on r.patient_id = x.pid
    ),

    scoped_pids as (
        select x.pid from xw as x
        where x.person_id in (select sc.person_id from scoped as sc)
    ),

    -- every row of a person in scope, every line of a claim in scope, and the rows in scope: one semi join per
    -- source and reason. As one OR of INs over all source rows DuckDB materialised the 87.5 M rows at 900 clinics
    -- (38 s on a night with nothing new, now 11 s). A claim of the scope no longer staged adds its lines to the
    -- work, never to the output (the rows out are the scope's).
    src as (
        {%- for b in link_sources %}
            {{ visit_link_rows(b) }}
            semi join scoped_pids as p on s.patient_id = p.pid
            union
            {{ visit_link_rows(b) }}
            semi join {{ scope_relation() }} as k on k.source = '{{ b[0] }}' and s.{{ b[2] }} = k.row_id
            {%- if b[0] == 'charges' %}
                union
                {{ visit_link_rows(b) }}
                semi join {{ scope_relation() }} as k on k.source = 'claims' and s.claim_id = k.row_id
            {%- endif %}
            {%- if not loop.last %}
                union
            {%- endif %}
        {%- endfor %}
    ),

    src_persons as (
        select distinct x.person_id
        from src as s
        inner join xw as x on s.patient_id = x.pid
    ),

{% endif -%}
visits as (
    select
        a.appointment_id,
        a.episode_id,
        x.person_id,
        cast(a.scheduled_start as date) as visit_date,
        coalesce(t.therapist_key, a.therapist_id) as therapist_key
    from {{ ref('int_appointments_collapsed') }} as a
    inner join xw as x on a.patient_id = x.pid
    left join therapist_npi as t on a.therapist_id = t.therapist_id
    where a.status = 'completed'
        {%- if inc %}
            and x.person_id in (select sp.person_id from src_persons as sp)
        {%- endif %}
),

rows_keyed as (
    select
        s.*,
        x.person_id,
        coalesce(t.therapist_key, s.therapist_id) as therapist_key
    from src as s
    left join xw as x on s.patient_id = x.pid
    left join therapist_npi as t on s.therapist_id = t.therapist_id
),

-- candidate visits of rows without an appointment id: same person, same date
candidates as (
    select
        r.source,
        r.row_id,
        count(*) as visits_on_date,
        count(*) filter (where r.therapist_key = v.therapist_key) as visits_with_therapist,
        any_value(v.appointment_id) as any_appointment_id,
        any_value(v.appointment_id) filter (where r.therapist_key = v.therapist_key) as therapist_appointment_id,
        count(*) filter (where r.episode_id = v.episode_id) as visits_in_episode,
        any_value(v.appointment_id) filter (where r.episode_id = v.episode_id) as episode_appointment_id,
        count(*) filter (where r.episode_id = v.episode_id and r.therapist_key = v.therapist_key) as visits_with_both,
        any_value(v.appointment_id) filter (
            where r.episode_id = v.episode_id and r.therapist_key = v.therapist_key
        ) as both_appointment_id
    from rows_keyed as r
    inner join visits as v on r.person_id = v.person_id and r.service_date = v.visit_date
    where r.appointment_id is null and r.expects_visit
    group by r.source, r.row_id
),

-- the rule for one row: the id it carries, else its one candidate, else its one candidate with its therapist
visit_rule as (
    select
        r.*,
        c.visits_on_date,
        c.visits_with_therapist,
        c.visits_in_episode,
        c.visits_with_both,
        case
            when r.appointment_id is not null then r.appointment_id
            when not r.expects_visit then null
            when c.visits_on_date = 1 then c.any_appointment_id
            when c.visits_with_therapist = 1 then c.therapist_appointment_id
            when c.visits_in_episode = 1 then c.episode_appointment_id
            when c.visits_with_both = 1 then c.both_appointment_id
        end as rule_appointment_id
    from rows_keyed as r
    left join candidates as c on r.source = c.source and r.row_id = c.row_id
),

-- a claim's appointment from its charge lines, when they name (or link to) exactly one
line_visits as (
    select
        claim_id,
        count(distinct rule_appointment_id) as appointments,
        any_value(rule_appointment_id) as appointment_id,
        bool_or(appointment_id is null) as lines_inferred
    from visit_rule
    where source = 'charges' and claim_id is not null and rule_appointment_id is not null
    group by claim_id
),

visit_linked as (
    select
        r.*,
        case
            when r.appointment_id is not null then 'source'
            when r.source = 'claims' and lv.appointments = 1 and not lv.lines_inferred then 'source'
            when r.source = 'claims' and lv.appointments = 1 then 'claim_lines'
            when not r.expects_visit then 'not_expected'
            when r.visits_on_date = 1 then 'patient_date'
            when r.visits_with_therapist = 1 then 'patient_date_therapist'
            when r.visits_in_episode = 1 then 'patient_date_episode'
            when r.visits_with_both = 1 then 'patient_date_episode_therapist'
            else 'unlinked'
        end as appointment_link,
        case
            when r.appointment_id is not null or not r.expects_visit then null
            when r.source = 'claims' and lv.appointments = 1 then null
            when r.visits_on_date is null then 'no_visit_on_date'
            when r.rule_appointment_id is null and r.visits_on_date > 1 then 'several_visits_on_date'
        end as visit_reason,
        coalesce(
            case when r.source = 'claims' and lv.appointments = 1 then lv.appointment_id end,
            r.rule_appointment_id
        ) as linked_appointment_id
    from visit_rule as r
    left join line_visits as lv on r.source = 'claims' and r.row_id = lv.claim_id
),

episode_dates as (
    select
        episode_id,
        patient_id,
        cast(scheduled_start as date) as d
    from {{ ref('int_appointments_collapsed') }}
    where
        episode_id is not null
        {%- if inc %}
            and patient_id in (
                select x.pid from xw as x
                where x.person_id in (select sp.person_id from src_persons as sp)
            )
        {%- endif %}
    union all
    select
        episode_id,
        patient_id,
        service_date
    from src
    where episode_id is not null
),

spans as (
    select
        e.episode_id,
        x.person_id,
        min(e.d) as first_date,
        max(e.d) as last_date
    from episode_dates as e
    inner join xw as x on e.patient_id = x.pid
    group by e.episode_id, x.person_id
),

span_candidates as (
    select
        r.source,
        r.row_id,
        count(distinct s.episode_id) as episodes_on_date,
        any_value(s.episode_id) as any_episode_id
    from visit_linked as r
    inner join spans as s on r.person_id = s.person_id and r.service_date between s.first_date and s.last_date
    where r.episode_id is null
    group by r.source, r.row_id
),

linked as (
    select
        r.source,
        r.row_id,
        r.patient_id,
        r.person_id,
        r.service_date,
        r.linked_appointment_id as appointment_id,
        coalesce(
            r.episode_id,
            a.episode_id,
            case when sc.episodes_on_date = 1 then sc.any_episode_id end
        ) as episode_id,
        r.appointment_link,
        case
            when r.episode_id is not null then 'source'
            when a.episode_id is not null then 'appointment'
            when sc.episodes_on_date = 1 then 'episode_span'
            else 'unlinked'
        end as episode_link,
        r.visit_reason,
        case
            when r.episode_id is not null or a.episode_id is not null or sc.episodes_on_date = 1 then null
            when sc.episodes_on_date > 1 then 'several_episodes_on_date'
            else 'no_episode_on_date'
        end as episode_reason
    from visit_linked as r
    left join {{ ref('int_appointments_collapsed') }} as a on r.linked_appointment_id = a.appointment_id
    left join span_candidates as sc on r.source = sc.source and r.row_id = sc.row_id
    {%- if inc %}
        semi join {{ scope_relation() }} as k on r.source = k.source and r.row_id = k.row_id
    {%- endif %}
)

select
    source,
    row_id,
    patient_id,
    person_id,
    service_date,
    appointment_id,
    episode_id,
    appointment_link,
    episode_link,
    coalesce(visit_reason, episode_reason) as unlinked_reason
from linked
