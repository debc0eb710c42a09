-- One row per charge line, with the code family used by the units-per-visit KPI (G- and L-codes excluded:
-- reporting codes and supplies are not treatment units) and its visit and episode: the ids the export carried,
-- else the ones the linking rule found (int_visit_links; how, in appointment_link / episode_link). Every staging
-- column, plus the flags; a left join on the charge's own key, so no line is lost or repeated. is_timed: minutes
-- were recorded, else (a format that bills units only, such as X12 837P) the CPT list's timed flag.
select
    c.* replace (l.appointment_id as appointment_id, l.episode_id as episode_id),  -- noqa: AM04
    upper(left(c.cpt_code, 1)) in ('G', 'L') as is_excluded_from_units,
    coalesce(c.minutes > 0, cpt.timed, false) as is_timed,
    l.appointment_link,
    l.episode_link,
    l.unlinked_reason
from {{ ref('stg_raw__charges') }} as c
left join {{ ref('int_visit_links') }} as l on l.source = 'charges' and c.charge_id = l.row_id
left join {{ ref('cpt') }} as cpt on c.cpt_code = cpt.code
