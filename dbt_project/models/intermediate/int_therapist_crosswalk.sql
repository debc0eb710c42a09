-- One row per way a standard file names a therapist, with our therapist_id: an X12 / FHIR `npi:<NPI>` (the
-- therapists file's npi column). Only an NPI exactly one therapist carries maps. Read wherever a charge line's
-- rendering therapist is read (docs/architecture.md, "Linking").
select
    'npi:' || npi as source_id,
    min(therapist_id) as therapist_id,
    'npi' as match_rule
from {{ ref('stg_raw__therapists') }}
where npi is not null
group by npi
having count(distinct therapist_id) = 1
