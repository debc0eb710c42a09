-- One row describing this build: its id, the as_of moment ("now" for open items), when it was built, and the
-- share of a cohort that must have an outcome before a KPI period stops 'maturing'.
select
    b.build_id,
    k.as_of,
    k.as_of_source,
    cast({{ local_now() }} as timestamp) as built_at,
    cast({{ var('maturity_resolved_share') }} as double) as maturity_resolved_share
from {{ ref('int_clocks_resolved') }} as k
cross join {{ ref('stg_app__builds') }} as b
