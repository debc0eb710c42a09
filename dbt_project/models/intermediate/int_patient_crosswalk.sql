-- One row per patient id of any source with the person it belongs to (person_id), so rows from two sources that
-- name one patient by different ids can be linked. The rule, in order (docs/architecture.md, "Linking"):
--   1. member id: ids whose normalised member id (letters and digits, upper case) is equal are one person. The
--      member id comes from the patients file, or from an X12 patient id `x12:member/<payer>/<member id>`.
--   2. name + birth date: an id without a member id joins the person of the ids with the same normalised first
--      name, last name (letters only, lower case, accents stripped) and birth date, when exactly one member id
--      person carries them (or none does: then the name-only ids are one person).
--   3. otherwise the id is its own person. Two ids with different member ids are never merged by name + birth
--      date (a namesake born the same day, or a new insurer: a wrong merge would put one patient's charges on
--      another's visits, a missed one only leaves the row unlinked and counted).
-- person_id is the smallest patient id of the group, so an id that matches nothing keeps its own value.
-- The pre-hook keeps the served build's crosswalk for the scope of the incremental int_visit_links (which drops it).
{{ config(pre_hook="{{ keep_previous() }}") }}

with ids as (
    select pid from {{ ref('int_patient_keys') }}
),

names as (
    select
        patient_id as pid,
        nullif(upper({{ regexp_replace_all('member_id', '[^A-Za-z0-9]', '') }}), '') as member_key,
        nullif(lower({{ regexp_replace_all(strip_accents('first_name'), '[^A-Za-z]', '') }}), '') as first_key,
        nullif(lower({{ regexp_replace_all(strip_accents('last_name'), '[^A-Za-z]', '') }}), '') as last_key,
        birth_date
    from {{ ref('stg_raw__patients') }}
),

patients as (
    select
        pid,
        member_key,
        -- null if any is null
        first_key || '|' || last_key || '|' || {{ format_ts('birth_date', '%Y-%m-%d') }} as name_key
    from names
),

-- an X12 patient id carries the subscriber's member id: x12:member/<payer>/<member id> (ingestion/interop/x12.py)
keyed as (
    select
        ids.pid,
        coalesce(
            p.member_key,
            nullif(
                upper({{ regexp_replace_all(
                    "regexp_extract(ids.pid, '^x12:member/[^/]*/(.+)', 1)", '[^A-Za-z0-9]', ''
                ) }}), ''
            )
        ) as member_key,
        p.name_key
    from ids
    left join patients as p using (pid)
),

by_member as (
    select
        member_key,
        min(pid) as person_id
    from keyed
    where member_key is not null
    group by member_key
),

by_name as (
    select
        k.name_key,
        count(distinct m.person_id) as member_persons,
        min(m.person_id) as member_person_id,
        min(k.pid) filter (where k.member_key is null) as name_only_person_id
    from keyed as k
    left join by_member as m using (member_key)
    where k.name_key is not null
    group by k.name_key
)

select
    k.pid,
    case
        when k.member_key is not null then m.person_id
        when n.member_persons = 1 then n.member_person_id
        when n.member_persons = 0 then n.name_only_person_id
        else k.pid
    end as person_id,
    case
        when k.member_key is not null then 'member_id'
        when n.member_persons <= 1 then 'name_birth_date'
        when n.member_persons > 1 then 'ambiguous_name_birth_date'
        else 'own_id'
    end as match_rule
from keyed as k
left join by_member as m using (member_key)
left join by_name as n using (name_key)
