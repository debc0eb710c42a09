-- One row describing this build: its id, the as_of moment ("now" for open items), when it was built, and the
-- share of a cohort that must have an outcome before a KPI period stops 'maturing'.
-- built_at is UTC without a zone (dbt's run_started_at, rendered as a literal: the same SQL on every engine), so a
-- reader in any time zone ($TZ of `ptpulse health`) computes the build's age right. At parse time (and in sqlfluff's
-- rendering) there is no run: the epoch stands in.
{%- if execute %}
    {%- set built_at_utc = run_started_at.strftime('%Y-%m-%d %H:%M:%S') %}
{%- else %}
    {%- set built_at_utc = '1970-01-01 00:00:00' %}
{%- endif %}
select
    b.build_id,
    k.as_of,
    k.as_of_source,
    cast('{{ built_at_utc }}' as timestamp) as built_at,
    cast({{ var('maturity_resolved_share') }} as double) as maturity_resolved_share
from {{ ref('int_clocks_resolved') }} as k
cross join {{ ref('stg_app__builds') }} as b
