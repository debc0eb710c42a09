-- One row per distinct patient id seen in any source, with its keyed pseudonym (patient_key): HMAC-SHA256
-- with the installation secret (UDF ptpulse_pseudonym, ptpulse/build/dbt_plugin.py), so the Python function
-- runs once per patient, never per event row. The patient_key macro looks keys up here. Column `pid` (not
-- patient_id) so the macro's lookup never resolves an unqualified outer `patient_id` to this table.
-- A build that starts from the served file keeps the keys it already holds and hashes only new ids (the table is
-- still rebuilt whole, so a vanished id goes): the secret's public id is in the build fingerprint, so a rotated
-- secret always means a full build from an empty file (ptpulse/build/incremental.py).
{%- set previous = none -%}
{%- if execute and not flags.FULL_REFRESH -%}
    {%- set previous = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
{%- endif %}
with ids as (
    select patient_id from {{ ref('stg_raw__patients') }}
    union
    select patient_id from {{ ref('stg_raw__intake_events') }}
    union
    select patient_id from {{ ref('stg_raw__scheduling_events') }}
    union
    select patient_id from {{ ref('stg_raw__documentation_events') }}
    union
    select patient_id from {{ ref('stg_raw__charges') }}
    union
    select patient_id from {{ ref('stg_raw__claims') }}
    union
    select patient_id from {{ ref('stg_raw__authorizations') }}
),

known as (
    {%- if previous %}
        select
            k.pid,
            k.patient_key
        from {{ previous }} as k
        semi join ids as i on k.pid = i.patient_id
    {%- else %}
        select
            cast(null as string) as pid,
            cast(null as string) as patient_key
        where false
    {%- endif %}
)

select
    i.patient_id as pid,
    ptpulse_pseudonym(i.patient_id) as patient_key
from ids as i
where
    i.patient_id is not null
    and not exists (
        select 1 from known as kn
        where kn.pid = i.patient_id
    )
union all
select
    pid,
    patient_key
from known
