-- The build's "now" (as_of). The dbt var `as_of` overrides it; otherwise the first tier that has data wins, so
-- a practice that loaded any subset of sources still builds (an X12-only or FHIR-only practice has no intake or
-- scheduling events):
--   data         latest recorded intake or scheduling event (event_at records the past; future appointment
--                start times do not count), the clock of a practice with its activity exports loaded;
--   billing      else the latest charge posting, claim submission, remittance, note, authorization or
--                marketing touch / spend report;
--   reference    else the latest update of a reference file (clinics, patients, payers, physicians, therapists);
--   load_time    else (every source empty) when the last file was loaded, else when the build ran.
{% set override = var('as_of', '') %}
{% if override %}
    select
        cast('{{ override }}' as timestamp) as as_of,
        'var' as as_of_source
{% else %}
    with tiers as (
        select
            greatest(
                (select max(last_event_at) from {{ ref('int_referrals_pivoted') }}),
                (select max(last_event_at) from {{ ref('int_appointments_collapsed') }})
            ) as activity_at,
            greatest(
                (select max(posted_at) from {{ ref('stg_raw__charges') }}),
                (select max(submitted_at) from {{ ref('stg_raw__claims') }}),
                (select max(event_at) from {{ ref('stg_raw__remittances') }}),
                (select max(created_at) from {{ ref('stg_raw__documentation_events') }}),
                (select max(received_at) from {{ ref('stg_raw__authorizations') }}),
                (select max(touched_at) from {{ ref('stg_raw__marketing_touches') }}),
                (select max(reported_at) from {{ ref('stg_raw__marketing_spend_months') }})
            ) as billing_at,
            greatest(
                (select max(updated_at) from {{ ref('stg_raw__clinics') }}),
                (select max(updated_at) from {{ ref('stg_raw__patients') }}),
                (select max(updated_at) from {{ ref('stg_raw__payers') }}),
                (select max(updated_at) from {{ ref('stg_raw__referring_physicians') }}),
                (select max(updated_at) from {{ ref('stg_raw__therapists') }})
            ) as reference_at,
            coalesce(
                (select max(finished_at) from {{ ref('stg_raw__loads') }}),
                cast({{ local_now() }} as timestamp)
            ) as load_at
    )

    select
        coalesce(activity_at, billing_at, reference_at, load_at) as as_of,
        case
            when activity_at is not null then 'data'
            when billing_at is not null then 'billing'
            when reference_at is not null then 'reference'
            else 'load_time'
        end as as_of_source
    from tiers
{% endif %}
