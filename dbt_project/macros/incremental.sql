{# Incremental staging of the big event sources (docs/architecture.md "Incremental builds"). The merge rule
   (merge_latest) is a window over every version of a key, so the nightly cost is in re-deduplicating years of
   raw rows. An incremental staging table keeps the merged rows of the last good build and re-merges only the
   keys that new loads touched: every key with a raw row in a load newer than the table's watermark, all of its
   versions (old and new) re-merged with the unchanged rule, so a correction or a tombstone for a record of any
   age replaces it exactly. The pre-hook deletes those keys first (a key whose latest version is now a tombstone
   stays deleted); the model appends their re-merged rows. Keyed by load id, not event time, so no look-back
   window is needed for exactness; the build full-refreshes on demand, weekly, and when contracts, models or
   vars change (ptpulse/build/incremental.py). #}

{# The highest _load_id in the table as the last good build left it; null when not an incremental run. Every
   load at or below it was seen by that build (builds and loads are serialised by the pipeline lock); a lower
   value only re-merges a few more keys (a load whose rows all lost or were tombstones), never fewer. Rendered
   before the pre-hook deletes anything, for the model and for the hook alike. #}
{% macro incremental_watermark() -%}
    {%- if not execute or not is_incremental() -%}{{ return(none) }}{%- endif -%}
    {%- set value = run_query('select max(_load_id) from ' ~ this).columns[0].values()[0] -%}
    {{ return(-1 if value is none else value) }}
{%- endmacro %}

{# The natural keys whose merged row may have changed since the watermark: keys with a row in a newer load and,
   when the source has an `entity` (merge_latest keeps one source system per entity), every key sharing an
   entity with such a key; `extra`: a select of more keys (the lines of a claim re-sent with its lines,
   claim_lines_scope_keys). #}
{% macro incremental_scope_keys(relation, key, entity, since, extra=none) -%}
    select n.{{ key }} from {{ relation }} as n where n._load_id > {{ since }}
    {%- if extra %}
    union
    {{ extra }}
    {%- endif %}
    {%- if entity %}
    union
    select e.{{ key }} from {{ relation }} as e
    where e.{{ entity }} in (
        select t.{{ entity }} from {{ relation }} as t
        where t.{{ key }} in (select n2.{{ key }} from {{ relation }} as n2 where n2._load_id > {{ since }})
    )
    {%- endif %}
{%- endmacro %}

{# What merge_latest reads: the whole raw relation, or on an incremental run only the versions of the keys in
   scope. Unchanged for every model that is not incremental. `claim_lines`: the relation is a source's claim lines
   (charges), whose scope also holds every line of a claim re-sent with its lines tonight (claim_lines_scope_keys). #}
{% macro incremental_rows(relation, key_columns, entity=none, claim_lines=false) -%}
    {%- set since = incremental_watermark() -%}
    {%- if since is none -%}{{ return(relation) }}{%- endif -%}
    {%- if key_columns | length != 1 -%}
        {{ exceptions.raise_compiler_error(model.name ~ ': incremental staging needs a one-column natural key') }}
    {%- endif -%}
    {%- set key = key_columns[0] -%}
    {%- set extra = claim_lines_scope_keys(since) if claim_lines else none -%}
    {{ return('(select * from ' ~ relation ~ ' as r where r.' ~ key ~ ' in ('
        ~ incremental_scope_keys(relation, key, entity, since, extra) ~ '))') }}
{%- endmacro %}

{# Pre-hook of an incremental staging model: delete the keys in scope, so their re-merged rows replace them and a
   tombstoned key stays gone. Empty on a full build. `claim_lines` as for incremental_rows. #}
{% macro incremental_delete_scope(name, key, entity=none, claim_lines=false) -%}
    {%- if is_incremental() -%}
        {%- set cols = [key, '_load_id'] + ([entity] if entity else []) -%}
        {%- set relation = raw_source(name, cols) -%}
        {%- set since = incremental_watermark() -%}
        {%- set extra = claim_lines_scope_keys(since) if claim_lines else none -%}
        delete from {{ this }}
        where {{ key }} in ({{ incremental_scope_keys(relation, key, entity, since, extra) }})
    {%- endif -%}
{%- endmacro %}

{# ---- Incremental intermediates (docs/architecture.md "Incremental builds") ----
   The big intermediates keep their rows of the last good build and recompute only a SCOPE: every output row
   whose inputs may have changed, widened to whole groups where a rule ranks or links across rows (visit numbers
   per episode, links per person). The scope is written to `<model>__scope` by the first pre-hook (while the old
   table is still whole, since it is part of the scope), its rows are deleted by the second, the model appends
   their recomputed rows. The scope table is kept until the build ends (read by later models' scopes and by the
   model's tests, macros/scoped_tests.sql; ptpulse/build/incremental.py drops it with the build state). New loads
   are those above the raw load the served build read (`meta.build_state`, kept in the incremental build's copy);
   no intermediate column depends on as_of (those live in the marts), so a row outside the scope is exactly what a
   full build computes. #}

{# The last raw load the served build read; -1 (every raw row is new: a correct, slow night) when the copy holds
   no build state; none when not an incremental run. #}
{% macro served_raw_load_id() -%}
    {%- if not execute or not is_incremental() -%}{{ return(none) }}{%- endif -%}
    {%- set rel = adapter.get_relation(database=this.database, schema='meta', identifier='build_state') -%}
    {%- if rel is none -%}{{ return(-1) }}{%- endif -%}
    {%- set value = run_query('select max(raw_load_id) from ' ~ rel).columns[0].values()[0] -%}
    {{ return(-1 if value is none else value) }}
{%- endmacro %}

{% macro scope_relation() -%}
    {%- if not execute -%}{{ return(this ~ '__scope') }}{%- endif -%}
    {{ return(this.incorporate(path={'identifier': this.identifier ~ '__scope'})) }}
{%- endmacro %}

{# Pre-hooks of an incremental intermediate: [write the scope (`<scope_macro>_scope` below), delete its rows].
   `keys` are the columns identifying an output row. Empty on a full build. #}
{% macro scope_hooks(scope_macro, keys) -%}
    {%- if not is_incremental() -%}{{ return(['', '']) }}{%- endif -%}
    {%- set since = served_raw_load_id() -%}
    {%- set create -%}
        create or replace table {{ scope_relation() }} as
        {% if scope_macro == 'appointments_collapsed' -%}{{ appointments_collapsed_scope(since) }}
        {%- elif scope_macro == 'visit_links' -%}{{ visit_links_scope(since) }}
        {%- elif scope_macro == 'notes_summarised' -%}{{ notes_summarised_scope() }}
        {%- elif scope_macro == 'claim_links' -%}{{ claim_links_scope(since) }}
        {%- elif scope_macro == 'remittances_linked' -%}{{ remittances_linked_scope(since) }}
        {%- elif scope_macro == 'charge_lines_classified' -%}{{ charge_lines_classified_scope(since) }}
        {%- elif scope_macro == 'claims_reconciled' -%}{{ claims_reconciled_scope(since) }}
        {%- elif scope_macro == 'remittances_attributed' -%}{{ remittances_attributed_scope(since) }}
        {%- elif scope_macro == 'charge_lines' -%}{{ charge_lines_scope() }}
        {%- elif scope_macro == 'appointments' -%}{{ appointments_scope() }}
        {%- elif scope_macro == 'claims' -%}{{ claims_scope(since) }}
        {%- elif scope_macro == 'visits' -%}{{ visits_scope() }}
        {%- else -%}{{ exceptions.raise_compiler_error('no incremental scope named ' ~ scope_macro) }}
        {%- endif %}
    {%- endset -%}
    {%- set conds = [] -%}
    {%- for k in keys -%}{%- do conds.append('t.' ~ k ~ ' = s.' ~ k) -%}{%- endfor -%}
    {%- set delete -%}
        delete from {{ this }} as t using {{ scope_relation() }} as s where {{ conds | join(' and ') }}
    {%- endset -%}
    {{ return([create, delete]) }}
{%- endmacro %}

{# A model's input restricted to the scope on an incremental run (`alias.col = scope.key` pairs); the relation
   itself otherwise. #}
{% macro in_scope(relation, pairs) -%}
    {%- if not is_incremental() -%}{{ return(relation) }}{%- endif -%}
    {%- set conds = [] -%}
    {%- for col, key in pairs.items() -%}
        {%- do conds.append('scoped_row.' ~ col ~ ' = scope_key.' ~ key) -%}
    {%- endfor -%}
    {{ return('(select scoped_row.* from ' ~ relation ~ ' as scoped_row semi join ' ~ scope_relation()
        ~ ' as scope_key on ' ~ conds | join(' and ') ~ ')') }}
{%- endmacro %}

{# The appointments a new load may have changed: every appointment any version of an event in a new load named.
   An event re-sent under another appointment id (a check-in corrected onto the right appointment) leaves its old
   appointment, which must be recomputed too (before, it kept a phantom completed visit until the weekly full
   refresh). #}
{% macro touched_appointments(since) -%}
    {%- set events = raw_source('scheduling_events', ['event_id', 'appointment_id', '_load_id']) -%}
    select distinct r.appointment_id from {{ events }} as r
    where r.event_id in (select n.event_id from {{ events }} as n where n._load_id > {{ since }})
{%- endmacro %}

{# int_appointments_collapsed: the appointments touched by a new load (touched_appointments), widened to every
   appointment of an episode one of them was or is in, and, for those without an episode, to the patient's other
   episode-less appointments (visit_number ranks within them). #}
{% macro appointments_collapsed_scope(since) -%}
    with touched as (
        {{ touched_appointments(since) }}
    ),

    parts as (
        select a.episode_id, a.patient_id from {{ this }} as a semi join touched as t using (appointment_id)
        union
        select e.episode_id, e.patient_id
        from {{ ref('stg_raw__scheduling_events') }} as e semi join touched as t using (appointment_id)
    )

    select appointment_id from touched
    union
    select a.appointment_id from {{ this }} as a
    semi join parts as p on a.episode_id = p.episode_id
    union
    select a.appointment_id from {{ this }} as a
    semi join parts as p on a.patient_id is not distinct from p.patient_id and p.episode_id is null
    where a.episode_id is null
{%- endmacro %}

{# int_patient_crosswalk's pre-hook: its table as the served build left it, `<model>__prev`, for the scope of
   int_visit_links (which drops it): a patient id that moved to another person re-links both persons' rows. #}
{% macro keep_previous() -%}
    {%- if execute and not flags.FULL_REFRESH
        and adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
        create or replace table {{ this.incorporate(path={'identifier': this.identifier ~ '__prev'}) }} as
        select * from {{ this }}
    {%- endif -%}
{%- endmacro %}

{# The kept crosswalk, or none. Asked of the database, not of dbt's relation cache, which does not see a table
   a hook created. #}
{% macro previous_crosswalk() -%}
    {%- set xw = ref('int_patient_crosswalk') -%}
    {%- set prev = xw.incorporate(path={'identifier': xw.identifier ~ '__prev'}) -%}
    {%- set found = run_query(
        "select count(*) from duckdb_tables() where database_name = '" ~ xw.database ~ "' and schema_name = '"
        ~ xw.schema ~ "' and table_name = '" ~ prev.identifier ~ "'"
    ).columns[0].values()[0] -%}
    {{ return(prev if found else none) }}
{%- endmacro %}

{# int_visit_links: a row's links depend on its own row, the visits and episode spans of its person (same
   person, same date), the charge lines of its claim (a claim takes their one appointment), the episode of the
   appointment it links to, and therapist NPIs. The scope is (source, row_id) of
     - rows with a raw row in a new load (every version's patient id and claim id count below);
     - every row, before or after, of a person in scope: the persons of those rows, of the patients of every
       appointment with a scheduling event in a new load, and both persons of every patient id the crosswalk
       moved (added, removed or re-assigned);
     - rows linked to such an appointment (a carried appointment id of another person);
     - every line of a claim re-sent with its lines (an 837P or FHIR claim: a line it dropped leaves staging);
     - the claims of charge lines in scope;
     - everything when a therapists file was loaded (an NPI can change any therapist match) or the previous
       crosswalk is missing. #}
{% macro visit_links_scope(since) -%}
    {%- set prev = previous_crosswalk() -%}
    {%- set charges = raw_source('charges', ['charge_id', 'patient_id', 'claim_id', '_load_id']) -%}
    {%- set claims = raw_source('claims', ['claim_id', 'patient_id', '_load_id']) -%}
    {%- set notes = raw_source('documentation_events', ['note_id', 'patient_id', '_load_id']) -%}
    {%- set sched = raw_source('scheduling_events', ['appointment_id', 'patient_id', '_load_id']) -%}
    {%- set everything = not prev or has_new_load(['therapists'], since) -%}
    {%- set resent_claim_lines = claim_lines_scope_keys(since) -%}
    with xw as (
        select pid, person_id from {{ ref('int_patient_crosswalk') }}
    ),

    new_rows as (
        select 'charges' as source, r.charge_id as row_id, r.patient_id, r.claim_id from {{ charges }} as r
        where r.charge_id in (select n.charge_id from {{ charges }} as n where n._load_id > {{ since }})
        union all
        select 'claims', r.claim_id, r.patient_id, r.claim_id from {{ claims }} as r
        where r.claim_id in (select n.claim_id from {{ claims }} as n where n._load_id > {{ since }})
        union all
        select 'documentation_events', r.note_id, r.patient_id, null from {{ notes }} as r
        where r.note_id in (select n.note_id from {{ notes }} as n where n._load_id > {{ since }})
        {%- if resent_claim_lines %}
        union all
        select 'charges', r.charge_id, r.patient_id, r.claim_id from {{ charges }} as r
        where r.charge_id in ({{ resent_claim_lines }})
        {%- endif %}
    ),

    touched_appointments as (
        {{ touched_appointments(since) }}
    ),

    moved as (
        {%- if prev %}
        select o.person_id as old_person, n.person_id as new_person
        from {{ prev }} as o full outer join xw as n on o.pid = n.pid
        where o.person_id is distinct from n.person_id
        {%- else %}
        select person_id as old_person, person_id as new_person from xw
        {%- endif %}
    ),

    persons as (
        select x.person_id from new_rows as r inner join xw as x on r.patient_id = x.pid
        union
        select l.person_id from {{ this }} as l semi join new_rows as r on l.source = r.source and l.row_id = r.row_id
        union
        select x.person_id from {{ sched }} as s
        inner join xw as x on s.patient_id = x.pid
        where s.appointment_id in (select appointment_id from touched_appointments)
        union
        select old_person from moved
        union
        select new_person from moved
    ),

    current_rows as (
        select 'charges' as source, charge_id as row_id, patient_id, claim_id from {{ ref('stg_raw__charges') }}
        union all
        select 'claims', claim_id, patient_id, claim_id from {{ ref('stg_raw__claims') }}
        union all
        select 'documentation_events', note_id, patient_id, null from {{ ref('stg_raw__documentation_events') }}
    ),

    rows_in_scope as (
        select source, row_id from new_rows
        union
        select l.source, l.row_id from {{ this }} as l
        {%- if not everything %}
        where l.person_id in (select person_id from persons)
            or l.appointment_id in (select appointment_id from touched_appointments)
        {%- endif %}
        union
        select c.source, c.row_id from current_rows as c
        {%- if not everything %}
        where c.patient_id in (select x.pid from xw as x where x.person_id in (select person_id from persons))
        {%- endif %}
    ),

    keys as (
        select source, row_id from rows_in_scope
        union
        select 'claims', c.claim_id from current_rows as c
        semi join rows_in_scope as r on c.source = r.source and c.row_id = r.row_id
        where c.source = 'charges' and c.claim_id is not null
        union
        select 'claims', r.claim_id from new_rows as r where r.source = 'charges' and r.claim_id is not null
    )

    -- the old person, date and episode of each row: the claim-side scopes below match claims on them
    select k.source, k.row_id, p.person_id as prev_person_id, p.service_date as prev_service_date,
        p.episode_id as prev_episode_id
    from keys as k left join {{ this }} as p on k.source = p.source and k.row_id = p.row_id
{%- endmacro %}

{# int_notes_summarised: an episode's row is a function of the notes linked to it, so it can change only when one
   of its notes is recomputed by int_visit_links (a note of a new load, corrected, deleted or re-linked: all in its
   scope). The scope: the old and the new episode of every note int_visit_links recomputed. #}
{% macro notes_summarised_scope() -%}
    {%- set vl = upstream_scope('int_visit_links') -%}
    {%- set links = ref('int_visit_links') -%}
    select s.prev_episode_id as episode_id from {{ vl }} as s
    where s.source = 'documentation_events' and s.prev_episode_id is not null
    union
    select l.episode_id from {{ links }} as l
    semi join {{ vl }} as s on l.source = s.source and l.row_id = s.row_id
    where l.source = 'documentation_events' and l.episode_id is not null
{%- endmacro %}

{% macro drop_previous_crosswalk() -%}
    {%- set xw = ref('int_patient_crosswalk') -%}
    drop table if exists {{ xw.incorporate(path={'identifier': xw.identifier ~ '__prev'}) }}
{%- endmacro %}

{# ---- The claim side: int_claim_links -> int_remittances_linked, int_charge_lines_classified ->
   int_claims_reconciled, int_remittances_attributed. Each scope is derived from the scopes its upstream models
   wrote this build (which are therefore kept until the build ends: ptpulse/build/incremental.py drops every
   `__scope` table with the build state) and carries the OLD value a consumer needs of each row in it (the old
   person, date and episode of a re-linked claim, the old claim of a re-linked charge line or remittance), taken
   in the first pre-hook while the old table is still whole. #}

{# The scope an upstream incremental intermediate wrote in this build. Missing means that model did not run
   incrementally in this invocation: an error with the fix, never a guessed scope. #}
{% macro upstream_scope(model_name) -%}
    {%- set up = ref(model_name) -%}
    {%- set rel = up.incorporate(path={'identifier': up.identifier ~ '__scope'}) -%}
    {%- set found = run_query(
        "select count(*) from duckdb_tables() where database_name = '" ~ up.database ~ "' and schema_name = '"
        ~ up.schema ~ "' and table_name = '" ~ rel.identifier ~ "'"
    ).columns[0].values()[0] -%}
    {%- if not found -%}
        {{ exceptions.raise_compiler_error(model.name ~ ': ' ~ model_name ~ ' wrote no incremental scope in this '
            ~ 'build (it did not run incrementally); run `ptpulse build --full-refresh`') }}
    {%- endif -%}
    {{ return(rel) }}
{%- endmacro %}

{# Whether one of these sources has a load newer than `since` (a Python bool, asked before the scope query runs).
   `reloaded` is the same as the SQL literal true or false: a constant, because `x in (...) or exists (...)` kept
   DuckDB from filtering the big scans first (int_visit_links' scope took twice as long with such an OR at 200
   clinics). A new load of a reference source whose crosswalks map every row (clinics, therapists, payers) makes
   a model recompute every row. #}
{% macro has_new_load(sources, since) -%}
    {%- set parts = [] -%}
    {%- for s in sources -%}
        {%- do parts.append('select 1 from ' ~ raw_source(s, ['_load_id']) ~ ' as r where r._load_id > ' ~ since) -%}
    {%- endfor -%}
    {%- set found = run_query('select count(*) > 0 from (' ~ parts | join(' union all ') ~ ') as n') -%}
    {{ return(found.columns[0].values()[0]) }}
{%- endmacro %}

{% macro reloaded(sources, since) -%}
    {{- 'true' if has_new_load(sources, since) else 'false' -}}
{%- endmacro %}

{# int_claim_links (charges and remittances): a row's claim depends on its own row, its person and episode
   (int_visit_links) and, without a carried claim id, on every claim of its (person, date) (a charge) or
   (episode, date) (a remittance). The scope: charges and remittances with a raw row in a new load, the charges
   int_visit_links recomputed, and every charge / remittance sharing a (person, date) / (episode, date) with the
   old or the new values of a claim int_visit_links recomputed (re-linked, new, corrected or deleted); and the
   remittances carrying a number (or an id) that a new load gave to or took from a claim (claim_number). #}
{% macro claim_links_scope(since) -%}
    {%- set vl = upstream_scope('int_visit_links') -%}
    {%- set links = ref('int_visit_links') -%}
    with claim_keys as (
        select prev_person_id as person_id, prev_service_date as service_date, prev_episode_id as episode_id
        from {{ vl }} where source = 'claims'
        union
        select l.person_id, l.service_date, l.episode_id from {{ links }} as l
        semi join {{ vl }} as s on l.source = s.source and l.row_id = s.row_id
        where l.source = 'claims'
    ),

    touched_claims as (
        select r.claim_id from {{ raw_source('claims', ['claim_id', '_load_id']) }} as r where r._load_id > {{ since }}
    ),

    renumbered as (
        select v.claim_number as number
        from {{ raw_source('claims', ['claim_id', 'claim_number']) }} as v
        where v.claim_number is not null and v.claim_id in (select t.claim_id from touched_claims as t)
        union
        select t.claim_id from touched_claims as t
        where t.claim_id in (select c.claim_number from {{ ref('stg_raw__claims') }} as c)
    ),

    keys as (
        select 'charges' as source, r.charge_id as row_id
        from {{ raw_source('charges', ['charge_id', '_load_id']) }} as r where r._load_id > {{ since }}
        union
        select 'remittances', r.remit_id
        from {{ raw_source('remittances', ['remit_id', '_load_id']) }} as r where r._load_id > {{ since }}
        union
        select source, row_id from {{ vl }} where source = 'charges'
        union
        select l.source, l.row_id from {{ links }} as l
        semi join claim_keys as c on l.person_id = c.person_id and l.service_date = c.service_date
        where l.source = 'charges'
        union
        select 'remittances', r.remit_id from {{ ref('stg_raw__remittances') }} as r
        semi join claim_keys as c on r.episode_id = c.episode_id and r.service_date = c.service_date
        union
        -- remittances naming a claim by a number (or an id) that a new load gave to or took from a claim
        select 'remittances', r.remit_id from {{ ref('stg_raw__remittances') }} as r
        where r.claim_id in (select n.number from renumbered as n)
    )

    select k.source, k.row_id, p.claim_id as prev_claim_id
    from keys as k left join {{ this }} as p on k.source = p.source and k.row_id = p.row_id
{%- endmacro %}

{# int_remittances_linked: its rules look across a claim's rows (one source system per claim, kind of money and
   payer; an 835 reversal paired with the claim payment it reverses), so the scope is every remittance linked,
   before or now, to a claim that a remittance int_claim_links recomputed was or is linked to, plus those
   remittances themselves; every row when a payers file was loaded (payer ids and names). #}
{% macro remittances_linked_scope(since) -%}
    {%- set cl = upstream_scope('int_claim_links') -%}
    {%- set links = ref('int_claim_links') -%}
    {%- set everything = reloaded(['payers'], since) -%}
    with touched_claims as (
        select prev_claim_id as claim_id from {{ cl }} where source = 'remittances'
        union
        select l.claim_id from {{ links }} as l
        semi join {{ cl }} as s on l.source = s.source and l.row_id = s.row_id
        where l.source = 'remittances'
    ),

    keys as (
        select row_id as remit_id from {{ cl }} where source = 'remittances'
        union
        select l.row_id from {{ links }} as l
        where l.source = 'remittances' and (l.claim_id in (select claim_id from touched_claims) or {{ everything }})
        union
        select remit_id from {{ this }} where claim_id in (select claim_id from touched_claims) or {{ everything }}
    )

    select k.remit_id, p.claim_id as prev_claim_id from keys as k left join {{ this }} as p using (remit_id)
{%- endmacro %}

{# int_charge_lines_classified: one row per charge line from its own row, links and crosswalks, no cross-row
   rule. The scope: the charge lines int_visit_links or int_claim_links recomputed; every line when a clinics or
   therapists file was loaded (NPI crosswalks). #}
{% macro charge_lines_classified_scope(since) -%}
    {%- set everything = reloaded(['clinics', 'therapists'], since) -%}
    with keys as (
        select row_id as charge_id from {{ upstream_scope('int_visit_links') }} where source = 'charges'
        union
        select row_id from {{ upstream_scope('int_claim_links') }} where source = 'charges'
        union
        select charge_id from {{ this }} where {{ everything }}
        union
        select charge_id from {{ ref('stg_raw__charges') }} where {{ everything }}
    )

    select k.charge_id, p.claim_id as prev_claim_id, p.appointment_id as prev_appointment_id
    from keys as k left join {{ this }} as p using (charge_id)
{%- endmacro %}

{# The old and the new `column` of every row an upstream model recomputed tonight: the old value as its scope
   kept it (`prev_<column>`, taken while the old table was whole), the new one from the model as rebuilt. #}
{% macro old_and_new(scope, model_name, key, column) -%}
    select prev_{{ column }} from {{ scope }} where prev_{{ column }} is not null
    union
    select m.{{ column }} from {{ ref(model_name) }} as m semi join {{ scope }} as s using ({{ key }})
    where m.{{ column }} is not null
{%- endmacro %}

{# int_claims_reconciled: a claim's row sums its remittances and charge lines. The scope: the claims
   int_visit_links recomputed (header, links), and the old and new claim of every remittance and charge line
   recomputed upstream; every claim when a clinics or payers file was loaded. #}
{% macro claims_reconciled_scope(since) -%}
    {%- set rl = upstream_scope('int_remittances_linked') -%}
    {%- set ch = upstream_scope('int_charge_lines_classified') -%}
    {%- set everything = reloaded(['clinics', 'payers'], since) -%}
    with keys as (
        select row_id as claim_id from {{ upstream_scope('int_visit_links') }} where source = 'claims'
        union
        {{ old_and_new(rl, 'int_remittances_linked', 'remit_id', 'claim_id') }}
        union
        {{ old_and_new(ch, 'int_charge_lines_classified', 'charge_id', 'claim_id') }}
        union
        select claim_id from {{ this }} where {{ everything }}
        union
        select claim_id from {{ ref('stg_raw__claims') }} where {{ everything }}
    )

    select k.claim_id, p.appointment_id as prev_appointment_id from keys as k left join {{ this }} as p using (claim_id)
{%- endmacro %}

{# int_remittances_attributed: a remittance's clinic and episode come from its row and its claim (the claim row,
   else the claim's charge lines). The scope: the remittances int_remittances_linked recomputed, and every
   remittance of a claim whose row int_visit_links recomputed or whose charge lines changed (old and new claim);
   every remittance when a clinics file was loaded. #}
{% macro remittances_attributed_scope(since) -%}
    {%- set ch = upstream_scope('int_charge_lines_classified') -%}
    {%- set everything = reloaded(['clinics'], since) -%}
    with touched_claims as (
        select row_id as claim_id from {{ upstream_scope('int_visit_links') }} where source = 'claims'
        union
        {{ old_and_new(ch, 'int_charge_lines_classified', 'charge_id', 'claim_id') }}
    )

    select remit_id from {{ upstream_scope('int_remittances_linked') }}
    union
    select r.remit_id from {{ ref('int_remittances_linked') }} as r
    where r.claim_id in (select claim_id from touched_claims) or {{ everything }}
    union
    select remit_id from {{ this }} where claim_id in (select claim_id from touched_claims) or {{ everything }}
{%- endmacro %}

{# ---- Incremental marts: the big marts whose rows depend on a few intermediate rows each and on as_of only
   while they are open. The other marts are rebuilt in full every night (columns such as days since move every
   row, or they aggregate over the history). #}

{# marts.charge_lines projects int_charge_lines_classified row by row (patient_key is a keyed hash of the row's
   own patient id): exactly the lines that model recomputed tonight. #}
{% macro charge_lines_scope() -%}
    select charge_id from {{ upstream_scope('int_charge_lines_classified') }}
{%- endmacro %}

{# marts.appointments: a row depends on its int_appointments_collapsed row, on as_of only while it is still
   scheduled (is_future, is_unresolved) and on the app's confirm actions (confirmed_at, written between builds
   without a raw load). The scope: what int_appointments_collapsed recomputed, every row still scheduled, every
   row with a confirm before or now. #}
{% macro appointments_scope() -%}
    select appointment_id from {{ upstream_scope('int_appointments_collapsed') }}
    union
    select appointment_id from {{ this }} where status = 'scheduled' or confirmed_at is not null
    union
    select appointment_id from {{ ref('stg_app__actions') }} where action = 'confirm' and appointment_id is not null
{%- endmacro %}

{# marts.claims: a row depends on its int_claims_reconciled row, its payer's class and, while it is not closed,
   on as_of (ar_age_bucket). The scope: what int_claims_reconciled recomputed, every claim not closed whose bucket
   at tonight's as_of differs from the one it holds (a claim long in 120+ stays out: open claims that never close
   pile up with history), and every claim when a payers file was loaded. #}
{% macro claims_scope(since) -%}
    select claim_id from {{ upstream_scope('int_claims_reconciled') }}
    union
    select m.claim_id from {{ this }} as m cross join {{ ref('int_clocks_resolved') }} as k
    where (m.ar_age_bucket <> 'closed' and m.ar_age_bucket <> {{ open_ar_age_bucket('m.service_date', 'k.as_of') }})
        or {{ reloaded(['payers'], since) }}
{%- endmacro %}

{# marts.visits: a completed appointment's row with the sums of its charge lines and of its claims' payments.
   The scope: what marts.appointments recomputed, and the old and new appointment of every charge line and claim
   recomputed upstream (the old ones kept in their scopes while the old tables were whole). #}
{% macro visits_scope() -%}
    {%- set ch = upstream_scope('int_charge_lines_classified') -%}
    {%- set cr = upstream_scope('int_claims_reconciled') -%}
    select appointment_id from {{ upstream_scope('appointments') }}
    union
    {{ old_and_new(ch, 'int_charge_lines_classified', 'charge_id', 'appointment_id') }}
    union
    {{ old_and_new(cr, 'int_claims_reconciled', 'claim_id', 'appointment_id') }}
{%- endmacro %}
