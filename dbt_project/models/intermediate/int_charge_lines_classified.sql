-- One row per charge line, with the code family used by the units-per-visit KPI (G- and L-codes excluded:
-- reporting codes and supplies are not treatment units) and its visit and episode: the ids the export carried,
-- else the ones the linking rules found (int_visit_links, int_claim_links; how, in appointment_link / episode_link /
-- claim_link); clinic and therapist as our ids when a standard file named them by NPI (int_clinic_crosswalk,
-- int_therapist_crosswalk). Every staging column, plus the flags; left joins on the charge's own key, so no line
-- is lost or repeated. is_timed: minutes were recorded, else (a format that bills units only, such as X12 837P) the CPT
-- list's timed flag.
-- Incremental (macros/incremental.sql, charge_lines_classified_scope): recomputes the lines whose links were
-- recomputed upstream; the scope (with each line's old claim) is kept for int_claims_reconciled and
-- int_remittances_attributed.
-- depends_on: {{ source('raw', 'clinics') }} {{ source('raw', 'therapists') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=[
        "{{ scope_hooks('charge_lines_classified', ['charge_id'])[0] }}",
        "{{ scope_hooks('charge_lines_classified', ['charge_id'])[1] }}"
    ]
) }}
select
    {{ star_replace(ref('stg_raw__charges'), 'c', {
        'appointment_id': 'l.appointment_id',
        'episode_id': 'l.episode_id',
        'claim_id': 'k.claim_id',
        'clinic_id': 'coalesce(xc.clinic_id, c.clinic_id)',
        'therapist_id': 'coalesce(xt.therapist_id, c.therapist_id)'
    }) }},  -- noqa: AM04
    upper(left(c.cpt_code, 1)) in ('G', 'L') as is_excluded_from_units,
    coalesce(c.minutes > 0, cpt.timed, false) as is_timed,
    l.appointment_link,
    l.episode_link,
    l.unlinked_reason,
    k.claim_link,
    k.unlinked_reason as claim_unlinked_reason
from {{ in_scope(ref('stg_raw__charges'), {'charge_id': 'charge_id'}) }} as c
left join {{ ref('int_visit_links') }} as l on l.source = 'charges' and c.charge_id = l.row_id
left join {{ ref('int_claim_links') }} as k on k.source = 'charges' and c.charge_id = k.row_id
left join {{ ref('int_clinic_crosswalk') }} as xc on c.clinic_id = xc.source_id
left join {{ ref('int_therapist_crosswalk') }} as xt on c.therapist_id = xt.source_id
left join {{ ref('cpt') }} as cpt on c.cpt_code = cpt.code
