-- The build's "now" (as_of). The dbt var `as_of` overrides it; otherwise it is the latest recorded past event of the
-- practice's own systems, so a rebuild of the same data gives the same marts:
--   data / billing  the latest activity event (intake and scheduling: event_at records the past; future appointment
--                start times do not count), or the latest money or clinical event (charge posting, claim
--                submission, remittance, note) when that falls on a LATER DAY; as_of_source names which. So cash
--                posted days after the last intake or scheduling event (an 835 landed two days later) is inside
--                every cash figure instead of vanishing from the KPIs (cut at as_of's day) while payer mix and the
--                claims show it; within the day of the last activity, activity's clock stays "now" (an evening
--                payment batch neither turns the evening's appointments past nor makes a practice's "now" depend on
--                which billing export it sends).
--                Such an event never makes "now" later than the newest file's load time read on the westernmost
--                clinic's wall clock: a payment dated after the file that brought it (an 835's EFT date ahead of
--                its arrival, which the contracts let through up to the next midnight) would otherwise make
--                today's later appointments look past and unresolved. That cash counts once as_of reaches its date.
--                Authorizations and marketing (touches, spend reports) do not move the clock of a practice with
--                activity: they come from payers' and ad platforms' systems, on their own clocks.
--   billing      else (no intake or scheduling: an X12-only or FHIR-only practice) the latest charge posting, claim
--                submission, remittance, note, authorization or marketing touch / spend report, capped the same way;
--   reference    else the latest update of a reference file (clinics, patients, payers, physicians, therapists);
--   load_time    else (every source empty) when the last file was loaded, else when the build ran.
-- A practice that loaded any subset of sources still builds.
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
                (select max(created_at) from {{ ref('stg_raw__documentation_events') }})
            ) as money_at,
            greatest(
                (select max(received_at) from {{ ref('stg_raw__authorizations') }}),
                (select max(touched_at) from {{ ref('stg_raw__marketing_touches') }}),
                (select max(reported_at) from {{ ref('stg_raw__marketing_spend_months') }})
            ) as outside_at,
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
            ) as load_at,
            -- the newest load (UTC) on the westernmost clinic's wall clock, where "now" is earliest (no clinic or
            -- no known zone: UTC as it is)
            (
                select min(w.loaded_local_at)
                from (
                    select {{ utc_to_local('l.loaded_at', 'c.timezone') }} as loaded_local_at
                    from (select max(finished_at) as loaded_at from {{ ref('stg_raw__loads') }}) as l
                    left join {{ ref('stg_raw__clinics') }} as c on true
                ) as w
            ) as loaded_local_at
    ),

    -- least() skips nulls: a cap applies only to a clock that exists
    clocks as (
        select
            activity_at,
            case when money_at is not null then least(money_at, loaded_local_at) end as money_at,
            case
                when money_at is not null or outside_at is not null
                    then least(greatest(money_at, outside_at), loaded_local_at)
            end as billing_at,
            reference_at,
            load_at
        from tiers
    )

    select
        case
            when activity_at is not null and cast(money_at as date) > cast(activity_at as date) then money_at
            when activity_at is not null then activity_at
            else coalesce(billing_at, reference_at, load_at)
        end as as_of,
        case
            when activity_at is not null and cast(money_at as date) > cast(activity_at as date) then 'billing'
            when activity_at is not null then 'data'
            when billing_at is not null then 'billing'
            when reference_at is not null then 'reference'
            else 'load_time'
        end as as_of_source
    from clocks
{% endif %}
