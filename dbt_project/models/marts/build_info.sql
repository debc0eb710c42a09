-- One row describing this build: its id, the as_of moment ("now" for open items) and when it was built.
select
    cast('{{ env_var("PTPULSE_BUILD_ID", "dev") }}' as varchar) as build_id,
    k.as_of,
    k.as_of_source,
    cast(current_localtimestamp() as timestamp) as built_at
from {{ ref('int_clocks_resolved') }} as k
