-- One row per way a standard file names a clinic, with our clinic_id: an X12 / FHIR `npi:<NPI>` (the clinics
-- file's npi column). Only an NPI exactly one clinic carries maps (a group NPI billed for several clinics names
-- none of them: those rows keep npi:<NPI> and show as their own clinic). Read wherever a claim's, charge line's
-- or remittance's clinic is read (docs/architecture.md, "Linking").
select
    'npi:' || npi as source_id,
    min(clinic_id) as clinic_id,
    'npi' as match_rule
from {{ ref('stg_raw__clinics') }}
where npi is not null
group by npi
having count(distinct clinic_id) = 1
