-- One row per charge line, with the code family used by the units-per-visit KPI (G- and L-codes excluded:
-- reporting codes and supplies are not treatment units). Every staging column, plus the two flags.
select
    *,  -- noqa: AM04
    upper(left(cpt_code, 1)) in ('G', 'L') as is_excluded_from_units,
    coalesce(minutes, 0) > 0 as is_timed
from {{ ref('stg_raw__charges') }}
