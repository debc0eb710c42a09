"""Every question a page asks the warehouse, as parameterised SQL; aggregation happens in DuckDB.

One module per page (overview, funnel, referral_sources, attribution, leakage, work_queue, no_show, forecast,
data_health) holds that page's questions; `base` holds what they share (Reader, Filters, the clinic scope as
bound parameters, identity columns) and the app shell's own questions (build_info, clinics, data_date_range).

Privacy lives here, server-side: each function receives a `Reader` bound to a `Scope`.
- Clinics: the requested clinics are intersected with the scope (`Scope.effective_clinics`) and bound as
  a list parameter, so a front-desk user cannot ask for another clinic's rows.
- Identities: only PHI roles get patient names and phones (joined from dim_patients); everyone else gets
  `patient_key`. The reader also strips any PHI column from results for de-identified roles.
User input is never formatted into SQL: values are bound (`$name` parameters); the only text assembled
is from fixed whitelists in these modules (column names of breakdowns, for example).
"""
