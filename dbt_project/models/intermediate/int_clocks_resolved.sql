-- The build's "now" (as_of): the latest recorded intake or scheduling event (event_at records the past;
-- future appointment start times do not count). The dbt var `as_of` overrides it.
{% set override = var('as_of', '') %}
{% if override %}
    select
        cast('{{ override }}' as timestamp) as as_of,
        'var' as as_of_source
{% else %}
    select
        greatest(
            (select max(last_event_at) from {{ ref('int_referrals_pivoted') }}),
            (select max(last_event_at) from {{ ref('int_appointments_collapsed') }})
        ) as as_of,
        'data' as as_of_source
{% endif %}
