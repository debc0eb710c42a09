{# The latest-wins rule of interfaces.md section 2, in one place: for each natural key keep the row with the
   latest event time, ties broken by the later _load_id, then the later _line. A key whose latest version is a
   tombstone (_op = 'tombstone': a vendor export's delete flag, ingestion/profiles.py) is dropped from the
   current view; its earlier versions stay in raw.duckdb as history. `relation` comes from raw_source(). #}
{% macro dedup_latest(relation, key_columns, event_time) -%}
    select {{ star_except(['_op']) }}
    from (
        select *
        from {{ relation }}
        qualify row_number() over (
            partition by {{ key_columns | join(', ') }}
            order by {{ event_time }} desc nulls last, _load_id desc, _line desc
        ) = 1
    ) as latest
    where latest._op is distinct from 'tombstone'
{%- endmacro %}

{# Pseudonymous patient id: HMAC-SHA256 of patient_id with the installation secret, first 16 hex characters
   (ptpulse/core/secrets.py). Looked up in int_patient_keys, where the keyed hash runs once per distinct patient;
   DuckDB turns this correlated subquery into one hash join. Null when col is null. #}
{% macro patient_key(col) -%}
    (select pk.patient_key from {{ ref('int_patient_keys') }} as pk where pk.pid = {{ col }})
{%- endmacro %}

{# Weekdays (Mon-Fri) d with start_date < d <= end_date; negative when end is before start. Pure arithmetic:
   f(x) = weekdays in [epoch Monday, x); result = f(end + 1) - f(start + 1). #}
{% macro business_days(start_ts, end_ts) -%}
    ({{ _weekdays_before('(cast(' ~ end_ts ~ ' as date) + 1)') }}
     - {{ _weekdays_before('(cast(' ~ start_ts ~ ' as date) + 1)') }})
{%- endmacro %}

{% macro _weekdays_before(d) -%}
    (5 * {{ int_div(day_diff("date '1970-01-05'", d), 7) }}
     + least((({{ day_diff("date '1970-01-05'", d) }} % 7) + 7) % 7, 5))
{%- endmacro %}

{# Elapsed hours from a to b, as a double. `zone` (an IANA zone column, the clinic's): a and b are wall-clock times
   there (every export time is), so both are read as UTC instants first and a span across a DST change counts the
   hours that passed (Sat 20:00 CST -> Sun 08:00 CDT is 11 h, not 12). Without a zone the wall clocks are
   subtracted as they are: only for times that are not a clinic's wall clock. #}
{% macro hours_between(a, b, zone=none) -%}
    {%- if zone -%}
        {{ seconds_between(local_to_utc(a, zone), local_to_utc(b, zone)) }} / 3600.0
    {%- else -%}
        {{ seconds_between(a, b) }} / 3600.0
    {%- endif -%}
{%- endmacro %}

{# A wall-clock time of IANA zone `zone` as the UTC wall clock, by `shift` (an interval: its (zone, local hour)'s
   offset, projected once for many times; referral_funnel) where there is one, else local_to_utc itself. #}
{% macro shifted_to_utc(value, shift, zone) -%}
    case when {{ shift }} is not null then {{ value }} + {{ shift }} else {{ local_to_utc(value, zone) }} end
{%- endmacro %}

{# The inverse of utc_to_local (macros/portable): a wall-clock time of IANA zone `zone` as the UTC wall clock, with
   the same guard (a null or unknown zone leaves the value as it is). Adapter-dispatched like the portable macros.
   A time in the hour repeated when clocks fall back reads as its first (daylight-time) occurrence on every engine;
   one skipped when they spring forward (02:30 on the spring-forward night) reads as if the clock had not moved
   yet (= 03:30 daylight time). #}
{% macro local_to_utc(value, zone) -%}
    {#- as _pt (macros/portable) does, inline: a macro named with a leading underscore is private to its own file
        under sqlfluff's jinja templater (make lint), which renders the DuckDB version -#}
    {%- if adapter is defined -%}
        {%- set a = adapter -%}{{ return(a.dispatch('local_to_utc')(value, zone)) }}
    {%- endif -%}
    {{ return(duckdb__local_to_utc(value, zone)) }}
{%- endmacro %}
{% macro duckdb__local_to_utc(value, zone) -%}
    {#- ICU reads a repeated hour as its second (standard-time) occurrence: one hour earlier is the first when that
        instant shows the same wall clock (US and EU shifts are one hour). The zone is checked once: DuckDB runs a
        CASE branch only for the rows that take it, so timezone() never sees an unknown zone. -#}
    {%- set u = "timezone('UTC', timezone(" ~ zone ~ ', ' ~ value ~ '))' -%}
    case
        when {{ zone }} in (select tz.name from pg_timezone_names() as tz) then
            case
                when timezone({{ zone }}, timezone('UTC', {{ u }} - interval 1 hour)) = {{ value }}
                    then {{ u }} - interval 1 hour
                else {{ u }}
            end
        else {{ value }}
    end
{%- endmacro %}
{% macro default__local_to_utc(value, zone) -%}
    {#- to_utc_timestamp reads a repeated hour as its first occurrence (java.time); back to the wall-clock type -#}
    cast(coalesce(
        to_utc_timestamp(
            {{ value }},
            case when {{ zone }} rlike '^[A-Za-z]+(/[A-Za-z0-9_+-]+)+$' or {{ zone }} in ('UTC', 'Etc/UTC') then {{ zone }} end
        ),
        {{ value }}
    ) as timestamp_ntz)
{%- endmacro %}

{% macro safe_div(num, den) -%}
    {#- a double on every engine: Spark would divide decimals as decimals (rounded to 6 places); DuckDB's result is
        the same double either way -#}
    case when coalesce({{ den }}, 0) = 0 then null else cast(({{ num }}) as double) / ({{ den }}) end
{%- endmacro %}

{# A raw source table, or - when ingestion has never landed a file for it, so the table does not exist - an
   empty relation with the same column names (the staging model casts them), so a practice without, say,
   marketing spend still builds. source() is always called, so lineage and docs stay complete. Always carries
   `_op` (null where no vendor profile ever landed a delete flag), for dedup_latest's tombstone rule, and every
   listed column: one a contract added after the table was created (the loader adds it with the source's next
   file) reads as null, so an upgraded installation builds before that file arrives. #}
{% macro raw_source(name, columns) -%}
    {%- set rel = source('raw', name) -%}
    {%- if execute -%}
        {%- set found = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) -%}
    {%- else -%}
        {%- set found = true -%}
    {%- endif -%}
    {%- set missing = [] -%}
    {%- if found and execute -%}
        {%- set existing = adapter.get_columns_in_relation(found) | map(attribute='name') | list -%}
        {%- for c in columns + ['_op'] if c not in existing -%}{%- do missing.append(c) -%}{%- endfor -%}
    {%- endif -%}
    {%- if found and not missing -%}
        {{ rel }}
    {%- elif found -%}
        (select *{% for c in missing %}, cast(null as string) as {{ c }}{% endfor %} from {{ rel }})
    {%- else -%}
        (select {% for c in columns %}null as {{ c }}, {% endfor %}cast(null as string) as _op where false)
    {%- endif -%}
{%- endmacro %}

{# App outreach outcomes where a person was spoken to: they count as a contact (seed work_queue_outcomes,
   the vocabulary the app reads too). left_message, no_answer and wrong_number are attempts only. #}
{% macro app_contact_outcomes() -%}
    (select o.outcome from {{ ref('work_queue_outcomes') }} as o where o.counts_as_contact)
{%- endmacro %}

{# App actions that finish their task, as the app folds them (app/lib/actions.py status_after): a confirm, or
   an outreach whose outcome closes the task (seed work_queue_outcomes.closes_task). #}
{% macro app_closing_action(action, outcome) -%}
    ({{ action }} = 'confirm' or ({{ action }} = 'log_outreach' and {{ outcome }} in (
        select o.outcome from {{ ref('work_queue_outcomes') }} as o where o.closes_task)))
{%- endmacro %}

{# Row, non-null key and distinct key counts of a relation's primary key, for a test that checks a staging view's
   key (unique: distinct = rows; not null: non-null = rows) in the same scan as other checks on that view. #}
{% macro staging_pk_counts(key) -%}
    count(*) as pk_rows, count({{ key }}) as pk_not_null, count(distinct {{ key }}) as pk_distinct
{%- endmacro %}

{# The source system of each load (raw._loads): a vendor export mapped by a source profile is that profile
   (webpt_standard_extract, tebra_kareo_api_export, a drafted one), FHIR and X12 files are 'fhir' / 'x12', a
   native CSV is 'native'. Its rank comes from var('source_precedence') (lower = more authoritative); a profile
   not named there ranks as the 'profile' entry. #}
{% macro source_system_ranks() -%}
    {%- set order = var('source_precedence') -%}
    (
        select
            cast(load_id as bigint) as load_id,
            coalesce(
                {{ list_position_of(order, "coalesce(split_part(profile, '/', 1), 'native')") }},
                {{ list_position_of(order, "'profile'") }}
            ) as system_rank
        from {{ raw_source('_loads', ['load_id', 'profile']) }}
    )
{%- endmacro %}

{# How many source systems ever landed rows (compile time; 1 when raw._loads is absent or in sqlfluff). #}
{% macro _landed_systems() -%}
    {%- if not execute -%}{{ return(1) }}{%- endif -%}
    {%- set rel = source('raw', '_loads') -%}
    {%- set found = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) -%}
    {%- if not found -%}{{ return(1) }}{%- endif -%}
    {%- set cols = adapter.get_columns_in_relation(found) | map(attribute='name') | list -%}
    {%- if 'profile' not in cols -%}{{ return(1) }}{%- endif -%}
    {%- set q -%}
        select count(distinct coalesce(split_part(profile, '/', 1), 'native')) from {{ rel }}
        where status = 'loaded' and rows_landed > 0
    {%- endset -%}
    {{ return(run_query(q).columns[0].values()[0]) }}
{%- endmacro %}

{# Whether more than one source system ever landed rows (compile time): a model whose rule only picks between systems
   compiles it in only then. True when not executing (dbt parse, sqlfluff), so the whole SQL is rendered and linted. #}
{% macro several_source_systems() -%}
    {%- if not execute -%}{{ return(true) }}{%- endif -%}
    {{ return(_landed_systems() | int > 1) }}
{%- endmacro %}

{# The merge rule of docs/architecture.md ("Merging sources"), used by every staging model of a raw source.
   Within one source system the latest version of a key wins (event time, then the later _load_id, then the
   later _line); a key whose latest version there is a tombstone is dropped from that system only. Across systems
   each column of a key comes from the most authoritative system that carries it (non-null), so a thinner format
   never blanks a field a richer one carried; _load_id / _row_hash / _line are those of the most authoritative
   row. `entity` (optional): a column whose rows are one fact told differently by each system (the events of an
   appointment, the payments of a claim): per entity value, only the rows of its most authoritative system are
   kept (rows without a value are kept). One vectorised pass: a window per (key, system), then a group by key
   with min_by per column. A practice with one source system gets dedup_latest's plain query.
   `claim_lines` (charges): a system that sends a claim with all its lines keeps only the lines of its latest
   version of the claim (current_claim_lines). #}
{% macro merge_latest(name, columns, key_columns, event_time, entity=none, claim_lines=false) -%}
    {%- set relation = incremental_rows(raw_source(name, columns), key_columns, entity, claim_lines) -%}
    {%- if claim_lines and claim_line_files_landed() -%}
        {%- set relation = current_claim_lines(relation) -%}
    {%- endif -%}
    {%- if _landed_systems() | int <= 1 -%}
        {{ dedup_latest(relation, key_columns, event_time) }}
    {%- else -%}
        {%- set meta = ['_load_id', '_row_hash', '_line'] -%}
        {%- set fields = columns | reject('in', key_columns + meta) | list -%}
        {%- set keys_v = 'v.' ~ key_columns | join(', v.') -%}
        {%- set keys_r = 'r.' ~ key_columns | join(', r.') -%}
        {%- set picks = [] -%}
        {%- for c in fields -%}
            {%- set pick = 'min_by(v.' ~ c ~ ', v._system_rank) filter (where v.' ~ c ~ ' is not null) as ' ~ c -%}
            {%- do picks.append(pick) -%}
        {%- endfor -%}
        {%- for m in meta -%}
            {%- do picks.append('min_by(v.' ~ m ~ ', v._system_rank) as ' ~ m) -%}
        {%- endfor -%}
        select *
        from (
            select
                {{ keys_v }},
                {{ picks | join(', ') }},
                min(v._system_rank) as _system_rank
            from (
                select
                    r.*,
                    coalesce(s.system_rank, 1) as _system_rank
                from {{ relation }} as r
                left join {{ source_system_ranks() }} as s on r._load_id = s.load_id
                qualify row_number() over (
                    partition by {{ keys_r }}, coalesce(s.system_rank, 1)
                    order by r.{{ event_time }} desc nulls last, r._load_id desc, r._line desc
                ) = 1
            ) as v
            where v._op is distinct from 'tombstone'
            group by {{ keys_v }}
        ) as merged
        {%- if entity %}
        qualify {{ entity }} is null
            or _system_rank = min(_system_rank) over (partition by {{ entity }})
        {%- endif %}
    {%- endif -%}
{%- endmacro %}

{# ---- Claims sent with their lines (docs/architecture.md "Merging sources") ----
   An 837P claim (X12) and a FHIR Claim carry every service line of the claim: a replacement (837P CLM05-3 = 7, a
   FHIR Claim re-sent) that no longer carries a line has dropped it, though nothing names the line to delete (no
   tombstone: X12 and FHIR have no delete flag for a line). So a line from such a system counts only when it came in
   the same file as that system's latest version of its claim (merge order: submitted_at, then load, then line); a
   line whose claim that system never sent, a line without claim id, and every line of other systems (a CSV's
   charges are their own records) are kept as they are. The file is the load's sha256: one file lands one load per
   source (claims, charges), all with the file's sha256; the same bytes again are skipped. Of a claim one file sends
   several times (an 837P original and its replacement or void, a FHIR Claim and its corrected version) the readers
   map only the file's latest version (x12._latest_versions, fhir._latest_claim_versions): here the versions would
   tie on the file, and the loader lands a line identical to the one before it in the file as a duplicate, so the
   order within the file could not be applied to the lines that reach raw. #}
{% macro claim_line_systems() -%}
    {{ return(['x12', 'fhir']) }}
{%- endmacro %}

{# Whether one of those systems ever landed claims (compile time; false when raw._loads is absent or in sqlfluff):
   a practice without them compiles to the plain merge. #}
{% macro claim_line_files_landed() -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set rel = source('raw', '_loads') -%}
    {%- set found = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) -%}
    {%- if not found -%}{{ return(false) }}{%- endif -%}
    {%- set cols = adapter.get_columns_in_relation(found) | map(attribute='name') | list -%}
    {%- if 'profile' not in cols or 'sha256' not in cols -%}{{ return(false) }}{%- endif -%}
    {%- set q -%}
        select count(*) from {{ rel }}
        where status = 'loaded' and rows_landed > 0 and source = 'claims'
            and split_part(profile, '/', 1) in ('{{ claim_line_systems() | join("', '") }}')
    {%- endset -%}
    {{ return(run_query(q).columns[0].values()[0] > 0) }}
{%- endmacro %}

{# Each load's source system (as source_system_ranks names it) and file (sha256). #}
{% macro load_files() -%}
    (
        select
            cast(lf.load_id as bigint) as load_id,
            coalesce(split_part(lf.profile, '/', 1), 'native') as source_system,
            lf.sha256 as file_sha256
        from {{ raw_source('_loads', ['load_id', 'profile', 'sha256']) }} as lf
    )
{%- endmacro %}

{# The file of each claim's latest version per system that sends claims with their lines. #}
{% macro latest_claim_files() -%}
    (
        select
            ranked.claim_id,
            ranked.source_system,
            ranked.file_sha256
        from (
            select
                c.claim_id,
                f.source_system,
                f.file_sha256,
                row_number() over (
                    partition by c.claim_id, f.source_system
                    order by c.submitted_at desc nulls last, c._load_id desc, c._line desc
                ) as version_rank
            from {{ raw_source('claims', ['claim_id', 'submitted_at', '_load_id', '_line']) }} as c
            inner join {{ load_files() }} as f on c._load_id = f.load_id
            where f.source_system in ('{{ claim_line_systems() | join("', '") }}')
        ) as ranked
        where ranked.version_rank = 1
    )
{%- endmacro %}

{# The raw charge rows of `relation` that count: every row but a line of such a system whose claim's latest version
   in that system came in another file. #}
{% macro current_claim_lines(relation) -%}
    (
        select cl.*
        from {{ relation }} as cl
        left join {{ load_files() }} as clf on cl._load_id = clf.load_id
        left join {{ latest_claim_files() }} as lcf
            on cl.claim_id = lcf.claim_id and clf.source_system = lcf.source_system
        where lcf.claim_id is null or lcf.file_sha256 is not distinct from clf.file_sha256
    )
{%- endmacro %}

{# Incremental staging of charges (incremental_rows, incremental_delete_scope): the lines of every claim such a
   system re-sent in a new load, whether or not the new file carries them (a line it dropped has no new row). None
   when no such system landed claims. #}
{% macro claim_lines_scope_keys(since) -%}
    {%- if not claim_line_files_landed() -%}{{ return(none) }}{%- endif -%}
    {%- set charges = raw_source('charges', ['charge_id', 'claim_id']) -%}
    {%- set claims = raw_source('claims', ['claim_id', '_load_id']) -%}
    {%- set q -%}
        select cc.charge_id from {{ charges }} as cc
        where cc.claim_id in (
            select nc.claim_id from {{ claims }} as nc
            inner join {{ load_files() }} as nf on nc._load_id = nf.load_id
            where nc._load_id > {{ since }} and nf.source_system in ('{{ claim_line_systems() | join("', '") }}')
        )
    {%- endset -%}
    {{ return(q) }}
{%- endmacro %}

{# The A/R age bucket of an open claim at `as_of`: days from the date of service. One place for the mart
   (marts.claims) and its incremental scope, which recomputes only the open claims whose bucket moves. #}
{% macro open_ar_age_bucket(service_date, as_of) -%}
    case
        when {{ day_diff(service_date, 'cast(' ~ as_of ~ ' as date)') }} <= 30 then '0-30'
        when {{ day_diff(service_date, 'cast(' ~ as_of ~ ' as date)') }} <= 60 then '31-60'
        when {{ day_diff(service_date, 'cast(' ~ as_of ~ ' as date)') }} <= 90 then '61-90'
        when {{ day_diff(service_date, 'cast(' ~ as_of ~ ' as date)') }} <= 120 then '91-120'
        else '120+'
    end
{%- endmacro %}

{# A claim sent to a payer: it names a payer, and not the practice's self-pay "payer" (payer_class self_pay, whose
   discount is the practice's own contractual adjustment). Only these can be adjudicated or denied: the denial rate's
   cohort (marts.claims.is_adjudicated, kpi_facts_daily). A payer missing from the payers file (class unknown) counts. #}
{% macro is_payer_claim(payer_id, payer_class) -%}
    ({{ payer_id }} is not null and {{ payer_class }} is distinct from 'self_pay')
{%- endmacro %}

{# One source's rows as int_visit_links links them (`s` is the staging model): `b` is (source, model, key, claim id,
   therapist id, appointment id, expects a visit), the last four as expressions over `s`. #}
{% macro visit_link_rows(b) -%}
    select
        '{{ b[0] }}' as source,
        s.{{ b[2] }} as row_id,
        {{ b[3] }} as claim_id,
        s.patient_id,
        s.service_date,
        {{ b[4] }} as therapist_id,
        {{ b[5] }} as appointment_id,
        s.episode_id,
        {{ b[6] }} as expects_visit
    from {{ ref(b[1]) }} as s
{%- endmacro %}
