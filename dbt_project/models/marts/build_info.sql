-- One row describing this build: its id, the as_of moment ("now" for open items) and when it was built.
select
    b.build_id,
    k.as_of,
    k.as_of_source,
    cast(current_localtimestamp() as timestamp) as built_at
from {{ ref('int_clocks_resolved') }} as k
cross join {{ ref('stg_app__builds') }} as b
