"""Writes models/marts/_marts.yml and models/intermediate/_intermediate.yml from the compact spec below.

Run after changing a column list: `python dbt_project/scripts/gen_mart_docs.py`. The YAML is the artifact dbt
reads; this script only saves typing the same descriptions twice.
"""
from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent.parent

E = {"config": {"severity": "error"}}
W = {"config": {"severity": "warn"}}


def pk():
    return [{"primary_key": E}]


def acc(values, sev=E):
    return [{"accepted_values": {"arguments": {"values": values}, **sev}}]


def rel(to, field, sev=W, where=None, why=None):
    cfg = dict(sev["config"])
    if where:
        cfg["where"] = where
    test = {"arguments": {"to": f"ref('{to}')", "field": field}, "config": cfg}
    if why:  # the build reports it with the warning (meta.builds): say which dirt a warning comes from
        test = {"description": why, **test}
    return [{"relationships": test}]


def nn(sev=E):
    return [{"not_null": sev}]


COMMON = {
    "patient_id": "Patient id (PHI-linked: front desk and clinicians only).",
    "patient_key": "Keyed pseudonymous patient id: first 16 hex characters of HMAC-SHA256(installation secret, patient_id) (ptpulse/secrets.py; the secret lives outside the analytics files). Safe for marketing and analysts; changes when the secret is rotated.",
    "clinic_id": "Clinic id (dim_clinics).",
    "referral_id": "Referral (or lead) id.",
    "episode_id": "Episode of care id.",
    "appointment_id": "Appointment id.",
    "therapist_id": "Treating therapist (dim_therapists).",
    "payer_id": "Payer / plan (dim_payers).",
    "payer_class": "Payer class: commercial, medicare, medicare_advantage, medicaid, workers_comp, auto_pi, self_pay.",
    "claim_id": "Claim id (one claim per visit).",
    "channel": "Marketing channel, or 'physician_referral' / 'direct_access' for the referral source touch.",
}

FUNNEL_STAGES = ["received", "contacted", "scheduled", "evaluated", "plan_of_care", "active", "discharged"]
FUNNEL_EXITS = ["declined", "unreachable", "insurance_denied", "eval_no_show", "self_discharged", "lost"]
CHANNELS = ["search_ads", "social", "organic_web", "events", "employer", "word_of_mouth", "physician_referral",
            "direct_access"]

MARTS = [
    ("referral_funnel", "referral_id",
     "The referral-to-discharge funnel: one row per referral or lead, a timestamp per stage (received -> contacted -> scheduled -> evaluated -> plan_of_care -> active -> discharged), the exit (declined, unreachable, insurance_denied, eval_no_show, self_discharged, lost) with its reason, the current stage, durations in hours and business days, both conversion definitions (WebPT: finalized initial evaluation; Net Health: first visit within 7 days) and the owner of the next step.",
     [("referral_id", "Referral (or lead) id.", pk()),
      ("patient_id", COMMON["patient_id"], []),
      ("patient_key", COMMON["patient_key"], []),
      ("clinic_id", COMMON["clinic_id"], rel("dim_clinics", "clinic_id")),
      ("intake_kind", "referral (physician referral) or lead (self-referral / marketing inquiry).", acc(["referral", "lead"], W)),
      ("source_type", "Where it came from: physician, direct_access or marketing.", acc(["physician", "direct_access", "marketing"], W)),
      ("referring_physician_id", "Referring provider NPI when source_type = physician.", rel("dim_referring_physicians", "physician_id",
          why="Expected dirt: a referring physician whose source row was quarantined (missing id, bad date) is not in the dimension.")),
      ("channel", "Marketing channel the lead came in through (source_type = marketing).", []),
      ("source_channel", "The source as an attribution channel: physician_referral, direct_access or the marketing channel.", []),
      ("payer_id", "Insurance given at intake.", []),
      ("payer_class", COMMON["payer_class"], []),
      ("icd10_code", "Referral diagnosis (ICD-10-CM).", []),
      ("received_at", "Stage received: when the referral or lead arrived.", nn()),
      ("first_contact_at", "First outreach attempt (EMR outreach/contacted event, or an outreach logged in the work queue).", []),
      ("contacted_at", "Stage contacted: first time the patient was reached (contacted event, reached outreach), at the latest the booking time (a booking implies contact).", []),
      ("scheduled_at", "Stage scheduled: when the first appointment was booked.", []),
      ("evaluated_at", "Stage evaluated: start of the attended initial evaluation.", []),
      ("plan_of_care_at", "Stage plan_of_care: when the evaluation note with the plan of care was written (not signed: signatures lag), at the latest the second visit or the discharge (these set it also when the evaluation note is missing).", []),
      ("active_at", "Stage active: start of the second attended visit (treatment under way).", []),
      ("discharged_at", "Stage discharged: formal discharge (discharge summary, or plan finished and nothing booked for 30 days).", []),
      ("exit_stage", "Exit, if the referral left the funnel: declined, unreachable, insurance_denied, eval_no_show, self_discharged, lost. The earliest exit wins: a missed evaluation with none booked ahead is eval_no_show even when the intake later records lost or declined (the consequence, not another exit).", acc(FUNNEL_EXITS)),
      ("exit_reason", "Why it exited (intake reason code, discharge reason, no_show_at_evaluation, or the reason given when marked lost in the work queue).", []),
      ("exit_at", "When it exited.", []),
      ("current_stage", "The exit if any, else the furthest stage reached.", nn() + acc(FUNNEL_STAGES + FUNNEL_EXITS)),
      ("outreach_attempts", "Outreach attempts recorded in the EMR.", []),
      ("hours_to_contact", "Hours from received to first contact (time to first contact KPI).", []),
      ("hours_to_schedule", "Hours from received to the first booking.", []),
      ("hours_to_eval", "Hours from received to the initial evaluation.", []),
      ("business_days_to_schedule", "Business days (Mon-Fri after the day received) to the first booking.", []),
      ("business_days_to_eval", "Business days (Mon-Fri after the day received, up to the evaluation day) to the initial evaluation (time to first visit KPI).", []),
      ("days_eval_to_discharge", "Calendar days from evaluation to discharge.", []),
      ("is_evaluated", "An initial evaluation was attended (the attribution conversion).", nn()),
      ("converted_webpt", "WebPT conversion: the initial evaluation note is finalized (signed).", nn()),
      ("converted_7day", "Net Health conversion: first attended visit at most 7 calendar days after receipt.", nn()),
      ("episode_id", "Episode of care the referral opened, if any.", []),
      ("next_step_owner", "Who owns the next step: intake, front_desk, therapist; null when closed.", acc(["intake", "front_desk", "therapist"]))]),
    ("appointments", "appointment_id",
     "One row per appointment with its state folded from the scheduling events as a lifecycle, book -> reschedule -> outcome: a recorded outcome is final (arrived/completed = completed, cancelled, late_cancelled, no_show; the latest outcome event), even if a reschedule row was logged after it; without an outcome the appointment is scheduled at its latest booked/rescheduled slot.",
     [("appointment_id", COMMON["appointment_id"], pk()),
      ("episode_id", COMMON["episode_id"], rel("episodes", "episode_id", where="status = 'completed'")),
      ("referral_id", COMMON["referral_id"], rel("referral_funnel", "referral_id")),
      ("patient_id", COMMON["patient_id"], []),
      ("patient_key", COMMON["patient_key"], []),
      ("clinic_id", COMMON["clinic_id"], rel("dim_clinics", "clinic_id")),
      ("therapist_id", COMMON["therapist_id"], rel("dim_therapists", "therapist_id",
          why="Expected dirt: a therapist whose source row was quarantined is not in the dimension; their appointments stay.")),
      ("visit_type", "initial_eval, follow_up or re_eval.", acc(["initial_eval", "follow_up", "re_eval"])),
      ("booked_at", "When it was first booked.", []),
      ("scheduled_start", "Current scheduled start (local clinic time; reschedules move it).", nn()),
      ("duration_min", "Scheduled minutes.", []),
      ("status", "scheduled, completed, no_show, cancelled (>= 24 h notice) or late_cancelled (< 24 h).", nn() + acc(["scheduled", "completed", "no_show", "cancelled", "late_cancelled"])),
      ("status_at", "When the cancel / no-show was recorded.", []),
      ("cancel_reason", "Cancel reason code.", []),
      ("cancel_notice_hours", "Hours of notice on a cancel.", []),
      ("lead_time_days", "Days from booking to the scheduled start.", []),
      ("reschedule_count", "Times it was rescheduled.", []),
      ("visit_number", "Attended visit number within the episode (completed appointments only).", []),
      ("is_future", "Still scheduled and starting after as_of.", nn()),
      ("is_unresolved", "Scheduled start has passed (<= as_of) but no outcome was recorded.", []),
      ("confirmed_at", "Latest time the front desk confirmed the appointment with the patient in the work queue (app action confirm, e.g. on task confirm_high_risk:<appointment_id>); null if never confirmed.", [])]),
    ("episodes", "episode_id",
     "One row per started episode of care (initial evaluation documented or a visit attended): plan of care vs attended visits, status, plan-of-care completion, early dropout, outcome change against the measure's MCID, charges and collected net revenue.",
     [("episode_id", COMMON["episode_id"], pk()),
      ("referral_id", "Referral that opened the episode.", rel("referral_funnel", "referral_id")),
      ("patient_id", COMMON["patient_id"], []), ("patient_key", COMMON["patient_key"], []),
      ("clinic_id", COMMON["clinic_id"], rel("dim_clinics", "clinic_id")),
      ("therapist_id", "Evaluating therapist.", []),
      ("payer_id", COMMON["payer_id"], []), ("payer_class", COMMON["payer_class"], []),
      ("icd10_primary", "Primary diagnosis from the evaluation.", []),
      ("body_region", "Body region treated.", []),
      ("eval_date", "Initial evaluation date.", []),
      ("eval_note_signed_at", "When the evaluation note was signed (null = unsigned).", []),
      ("planned_visits", "Visits in the plan of care (latest evaluation / re-evaluation).", []),
      ("frequency_per_week", "Planned visits per week.", []),
      ("attended_visits", "Completed visits so far.", nn()),
      ("first_visit_at", "First attended visit.", []),
      ("last_visit_at", "Last attended visit.", []),
      ("last_visit_date", "Date of the last attended visit.", []),
      ("next_appointment_at", "Next future appointment, if any.", []),
      ("future_appointments", "Appointments booked after as_of.", []),
      ("no_shows", "No-shows in the episode.", []), ("late_cancels", "Late cancellations.", []), ("cancels", "Cancellations with notice.", []),
      ("discharge_date", "Discharge date (summary date, or last visit for an inferred discharge / self-discharge).", []),
      ("discharged_at", "Discharge timestamp (summary written, or last visit when inferred).", []),
      ("discharge_reason", "goals_met, plan_completed, self_discharged, insurance_exhausted, referred_out, moved_or_other.", []),
      ("has_discharge_summary", "A discharge summary was written.", []),
      ("status", "active, discharged or self_discharged (no visit and no future appointment for 30 days while the plan is unfinished, or documented so).", nn() + acc(["active", "discharged", "self_discharged"])),
      ("is_closed", "status is discharged or self_discharged.", []),
      ("plan_completed", "Closed and reached the planned visits or formally discharged (plan-of-care completion KPI).", []),
      ("early_dropout", "Closed before the 3rd visit (early dropout KPI).", []),
      ("outcome_measure", "LEFS (higher better), ODI, NDI, QuickDASH (lower better).", []),
      ("outcome_score_eval", "Score at evaluation.", []), ("outcome_score_discharge", "Score at discharge.", []),
      ("outcome_change", "Discharge minus evaluation score (raw points, sign as measured).", []),
      ("met_mcid", "Improvement reached the measure's minimal clinically important difference (seed outcome_measures).", []),
      ("charges_usd", "Billed charges of the episode's claims.", []),
      ("net_revenue_usd", "Net revenue collected for the episode (payer + patient payments): the attribution conversion value.", [])]),
    ("claims", "claim_id",
     "One row per claim: billed, allowed, payer paid, contractual adjustment, patient responsibility and payments, write-offs, open insurance and patient balances, denial with its CARC, days to pay and the A/R age bucket at as_of.",
     [("claim_id", COMMON["claim_id"], pk()),
      ("episode_id", COMMON["episode_id"], rel("episodes", "episode_id")),
      ("appointment_id", "Visit billed (from the charge lines).", []),
      ("patient_id", COMMON["patient_id"], []), ("patient_key", COMMON["patient_key"], []),
      ("clinic_id", COMMON["clinic_id"], rel("dim_clinics", "clinic_id")),
      ("payer_id", COMMON["payer_id"], rel("dim_payers", "payer_id")),
      ("payer_class", COMMON["payer_class"], []),
      ("service_date", "Date of service.", nn()), ("submitted_at", "Submitted (latest corrected version).", []),
      ("billed_usd", "Billed charges.", nn()),
      ("allowed_usd", "Allowed amount = billed - contractual adjustments.", []),
      ("payer_paid_usd", "Payer payments.", []), ("contractual_adj_usd", "Contractual adjustments.", []),
      ("patient_resp_usd", "Patient responsibility (deductible, coinsurance, copay).", []),
      ("patient_paid_usd", "Patient payments.", []), ("write_off_usd", "Write-offs.", []),
      ("insurance_balance_usd", "Open insurance balance = billed - payer paid - contractual - patient responsibility - write-off.", []),
      ("patient_balance_usd", "Open patient balance = patient responsibility - patient paid.", []),
      ("net_collected_usd", "Payer + patient payments.", []),
      ("is_denied", "At least one denial was received.", nn()),
      ("denial_carc", "CARC code of the first denial.", []), ("denied_usd", "Denied amount(s).", []), ("denied_at", "First denial.", []),
      ("is_denial_written_off", "Denied, never paid, written off (unrecovered denial).", []),
      ("days_to_pay", "Days from submission to the first payer payment.", []),
      ("ar_age_bucket", "closed, or age of an open claim at as_of by service date: 0-30, 31-60, 61-90, 91-120, 120+.", acc(["closed", "0-30", "31-60", "61-90", "91-120", "120+"])),
      ("charge_lines", "Charge lines on the claim.", []), ("charge_lines_usd", "Sum of the charge lines.", []),
      ("billable_units", "Units excluding G- and L-codes.", [])]),
    ("charge_lines", "charge_id", "One row per charge line (CPT/HCPCS code billed on a visit).",
     [("charge_id", "Charge line id.", pk()), ("claim_id", COMMON["claim_id"], rel("claims", "claim_id",
          why="Expected dirt: charge lines of claims quarantined at ingestion point at no claim.")),
      ("appointment_id", COMMON["appointment_id"], rel("appointments", "appointment_id")),
      ("episode_id", COMMON["episode_id"], []), ("patient_key", COMMON["patient_key"], []), ("clinic_id", COMMON["clinic_id"], []),
      ("therapist_id", COMMON["therapist_id"], []), ("service_date", "Date of service.", []),
      ("cpt_code", "CPT / HCPCS code.", nn()), ("modifiers", "Pipe-separated modifiers, e.g. GP|KX.", []),
      ("has_kx_modifier", "KX modifier present.", []), ("units", "Billed units.", []), ("minutes", "Timed minutes.", []),
      ("is_timed", "Timed code (minutes recorded).", []),
      ("is_excluded_from_units", "G- or L-code: excluded from units per visit.", []),
      ("charge_usd", "Charge of the line.", []), ("posted_at", "When posted.", [])]),
    ("visits", "appointment_id", "One row per attended visit (completed appointment) with its billed units, charges and collections.",
     [("appointment_id", COMMON["appointment_id"], pk()), ("episode_id", COMMON["episode_id"], []),
      ("referral_id", COMMON["referral_id"], []), ("patient_key", COMMON["patient_key"], []), ("clinic_id", COMMON["clinic_id"], []),
      ("therapist_id", COMMON["therapist_id"], []), ("visit_type", "initial_eval, follow_up or re_eval.", []),
      ("scheduled_start", "Start.", []), ("visit_date", "Date of the visit.", []), ("duration_min", "Minutes.", []),
      ("visit_number", "Visit number in the episode.", []), ("charge_lines", "Charge lines.", []),
      ("billable_units", "Units excluding G- and L-codes.", []), ("charges_usd", "Charges.", []),
      ("net_collected_usd", "Payer + patient payments on the visit's claim.", [])]),
    ("practice_kpis", "clinic_id x grain x period_start x kpi",
     "Every KPI of DESIGN.md in long format, per clinic and for the whole practice (clinic_id = 'ALL'), by day, week (Monday start) and month: value = numerator / denominator. pct values are fractions. Definitions and healthy bands: kpi_definitions.",
     [("clinic_id", "Clinic id, or 'ALL' for the whole practice. 'unattributed' holds money posted on a claim known neither from its claim row nor its charge lines (ALL includes it).", nn()),
      ("grain", "day, week or month.", nn() + acc(["day", "week", "month"])),
      ("period_start", "First day of the period.", nn()),
      ("kpi", "KPI key (kpi_definitions.kpi).", nn() + rel("kpi_definitions", "kpi", sev=E)),
      ("numerator", "Numerator (e.g. no-shows; A/R dollars for days_in_ar).", []),
      ("denominator", "Denominator (e.g. appointments; average daily charges for days_in_ar).", []),
      ("value", "numerator / denominator; null when the denominator is 0.", [])]),
    ("referral_source_performance", "source_type x source_id",
     "Per referral source (each referring physician, each marketing channel, direct access): volume, conversion, median time to first visit, visits per episode, plan-of-care completion, collected net revenue, last referral, 90-day trend and the liaison's is_fading flag. No patient identities.",
     [("source_type", "physician, marketing or direct_access.", nn() + acc(["physician", "marketing", "direct_access"])),
      ("source_id", "Physician NPI, marketing channel, or 'direct_access'.", []),
      ("source_name", "Display name.", []), ("specialty", "Physician specialty.", []), ("practice_name", "Physician practice.", []),
      ("referrals", "Referrals received.", []), ("evaluated", "Referrals with an attended evaluation.", []),
      ("converted", "Referrals with a finalized evaluation (WebPT conversion).", []),
      ("conversion_rate", "converted / referrals.", []),
      ("median_business_days_to_eval", "Median business days from referral to evaluation.", []),
      ("visits_per_episode", "Mean attended visits per started episode.", []),
      ("closed_episodes", "Closed episodes.", []),
      ("poc_completion_rate", "Closed episodes that completed the plan of care / closed episodes.", []),
      ("net_revenue_usd", "Collected net revenue of the source's episodes.", []),
      ("last_referral_date", "Most recent referral.", []),
      ("referrals_last_90d", "Referrals in the 90 days up to as_of.", []),
      ("referrals_prior_90d", "Referrals in the 90 days before that.", []),
      ("trend_pct", "(last 90 d - prior 90 d) / prior 90 d.", []),
      ("is_fading", "Physician whose volume fell: prior 90 d >= fading_min_prior and last 90 d <= fading_drop_share x prior.", nn())]),
    ("attribution_touches", "referral_id x touch_seq",
     "Heuristic multi-touch attribution: one row per conversion (evaluated referral) x touch, the referral source being the final touch after marketing touches. credit_* columns are dollars of the episode's collected net revenue (each sums to conversion_value_usd per referral); share_* columns are the fraction of one conversion.",
     [("referral_id", COMMON["referral_id"], nn()), ("touch_seq", "Touch order, 1 = first.", nn()),
      ("touch_id", "Marketing touch id, or 'source:<referral_id>' for the source touch.", []),
      ("channel", COMMON["channel"], nn() + acc(CHANNELS, W)), ("campaign", "Campaign.", []),
      ("touched_at", "When the touch happened.", []), ("is_source_touch", "The referral source itself (final touch).", []),
      ("path_length", "Touches on the path.", []), ("clinic_id", COMMON["clinic_id"], []),
      ("converted_at", "Evaluation time.", []), ("conversion_month", "Month of the evaluation.", []),
      ("conversion_value_usd", "Episode net revenue collected.", []),
      ("credit_first", "First-touch credit (USD).", []), ("credit_last", "Last-touch credit (USD).", []),
      ("credit_linear", "Linear credit (USD).", []), ("credit_time_decay", "Time-decay credit (USD, half-life var).", []),
      ("credit_position", "Position-based 40/20/40 credit (USD).", []),
      ("share_first", "First-touch share.", []), ("share_last", "Last-touch share.", []), ("share_linear", "Linear share.", []),
      ("share_time_decay", "Time-decay share.", []), ("share_position", "Position-based share.", [])]),
    ("attribution_roi", "model x channel x month",
     "Per heuristic model, channel and month: marketing spend, attributed conversions and revenue (conversion month), ROI and cost per new patient.",
     [("model", "first, last, linear, time_decay or position.", nn() + acc(["first", "last", "linear", "time_decay", "position"])),
      ("channel", COMMON["channel"], nn()), ("month", "Month (first day).", nn()),
      ("spend_usd", "Marketing spend (all clinics).", []),
      ("attributed_conversions", "Conversions credited (fractional).", []),
      ("attributed_revenue_usd", "Net revenue credited.", []),
      ("roi", "(attributed revenue - spend) / spend; null without spend.", []),
      ("cost_per_new_patient", "spend / attributed conversions; null without conversions.", [])]),
    ("attribution_paths", "path",
     "Touch paths with conversions, non-conversions and revenue: input of the Markov and Shapley models in ml/.",
     [("path", "Channels joined by ' > ' in touch order.", pk()), ("path_length", "Touches on the path.", []),
      ("conversions", "Referrals on the path that were evaluated.", []),
      ("non_conversions", "Referrals on the path that exited, or stayed unconverted for nonconversion_after_days.", []),
      ("revenue_usd", "Collected net revenue of the conversions.", [])]),
    ("revenue_leakage", "category x clinic_id x month",
     "Revenue leaking out of the practice by category (unconverted_referrals, no_shows, late_cancels, unfinished_plans, unrecovered_denials), clinic and month, each estimate with its assumption stated.",
     [("category", "Leakage category.", nn() + acc(["unconverted_referrals", "no_shows", "late_cancels", "unfinished_plans", "unrecovered_denials"])),
      ("clinic_id", COMMON["clinic_id"], nn()), ("month", "Month of the leak.", nn()),
      ("events", "Events (referrals, appointments, episodes, claims).", []),
      ("dollars_lost", "Estimated dollars lost.", []),
      ("assumption", "The assumption the estimate rests on, in plain words.", nn())]),
    ("work_queue_candidates", "task_id",
     "The front desk's (and clinicians') ranked work queue before no-show-risk scoring: every DESIGN.md rule but the ML one, with app actions applied (lost and done tasks removed - done = the latest action is a confirm or an outreach with outcome scheduled, as the app folds it - snoozes move due_at). Only current items, each rule with a window so nothing stale reaches the daily queue: referral rules (uncontacted, contacted unscheduled, evaluation no-show) look at referrals received in the last queue_lookback_days (30) days; unsigned notes created in the last unsigned_note_lookback_days (30) days (older unsigned notes are a compliance report: intermediate.int_notes_unsigned); episode rules (no future appointment, below plan-of-care frequency, authorizations, KX) only at active episodes, i.e. a visit or a booking within self_discharge_days (30) days; authorizations that ended at most 7 days ago; KX in the current calendar year.",
     [("task_id", "Stable task id 'rule:entity_id'; never a patient id (the per-patient KX rule uses patient_key:year).", pk()),
      ("rule", "Queue rule.", nn() + acc(["uncontacted_referral", "contacted_unscheduled", "eval_no_show_rebook", "active_no_future_appt", "below_poc_frequency", "auth_expiring", "medicare_kx_threshold", "unsigned_note"])),
      ("queue", "front_desk or clinician.", acc(["front_desk", "clinician"])),
      ("clinic_id", COMMON["clinic_id"], []), ("patient_id", COMMON["patient_id"], []), ("patient_key", COMMON["patient_key"], []),
      ("referral_id", COMMON["referral_id"], []), ("episode_id", COMMON["episode_id"], []), ("appointment_id", COMMON["appointment_id"], []),
      ("reason", "Why, in plain words, and what to do.", nn()),
      ("priority", "1 = most urgent.", nn()),
      ("due_at", "When it is due (moved by a snooze).", nn()),
      ("original_due_at", "Due time before any snooze.", []),
      ("created_at", "When the task arose.", []),
      ("snoozed_until", "Latest snooze end.", []), ("claimed_by", "Who claimed it.", []), ("assignee", "Who it is assigned to.", []),
      ("last_outreach_at", "Last outreach logged in the app.", []), ("last_outreach_outcome", "Its outcome.", []),
      ("last_action", "Latest app action.", []), ("last_action_at", "When.", []),
      ("queue_rank", "Overall rank by priority then due time.", [])]),
    ("dim_patients", "patient_id", "Patients with demographics and contact details. PHI: the only mart with names, birth dates and contact details (front desk only).",
     [("patient_id", COMMON["patient_id"], pk()), ("patient_key", COMMON["patient_key"], []),
      ("first_name", "PHI.", []), ("last_name", "PHI.", []), ("birth_date", "PHI.", []), ("sex", "F, M, X, U.", []),
      ("phone", "PHI.", []), ("email", "PHI.", []), ("address_line", "PHI.", []), ("city", "PHI.", []), ("state", "State.", []),
      ("zip", "PHI.", []), ("primary_payer_id", "Primary payer.", []), ("member_id", "PHI.", []),
      ("created_at", "Created.", []), ("updated_at", "Updated.", [])]),
    ("dim_clinics", "clinic_id", "Clinics with current therapist count and available minutes per week.",
     [("clinic_id", COMMON["clinic_id"], pk()), ("clinic_name", "Name.", []), ("address_line", "Address.", []), ("city", "City.", []),
      ("state", "State.", []), ("zip", "ZIP.", []), ("timezone", "IANA time zone.", []), ("opened_on", "Opened.", []),
      ("treatment_tables", "Treatment tables.", []), ("therapists", "Current therapists.", []),
      ("available_minutes_per_week", "Contracted patient-care minutes per week of current therapists.", [])]),
    ("dim_therapists", "therapist_id", "Therapists with home clinic, credential, schedule and available minutes per week.",
     [("therapist_id", COMMON["therapist_id"], pk()), ("clinic_id", "Home clinic.", rel("dim_clinics", "clinic_id")),
      ("first_name", "First name.", []), ("last_name", "Last name.", []), ("therapist_name", "Display name.", []),
      ("credential", "PT, DPT, PTA.", []), ("npi", "NPI.", []), ("hired_on", "Hired.", []), ("terminated_on", "Left.", []),
      ("weekly_hours", "Contracted patient-care hours per week.", []),
      ("available_minutes_per_week", "weekly_hours x 60.", []), ("work_days", "Working weekdays, e.g. Mon|Tue.", []),
      ("work_days_per_week", "Number of working weekdays.", []), ("day_start", "Start of day.", []), ("day_end", "End of day.", []),
      ("is_current", "Employed at as_of.", [])]),
    ("dim_payers", "payer_id", "Payers and plans.",
     [("payer_id", COMMON["payer_id"], pk()), ("payer_name", "Name.", []), ("payer_class", COMMON["payer_class"], []),
      ("requires_auth", "Prior authorization needed.", []), ("auth_visit_limit", "Visits a typical authorization covers.", [])]),
    ("dim_referring_physicians", "physician_id", "Referring providers (no patient data).",
     [("physician_id", "NPI-shaped id.", pk()), ("first_name", "First name.", []), ("last_name", "Last name.", []),
      ("credential", "MD, DO, NP, PA, DC, DPM.", []), ("physician_name", "Display name.", []), ("specialty", "Specialty.", []),
      ("practice_name", "Practice.", []), ("city", "City.", []), ("state", "State.", [])]),
    ("data_quality", "source x load_id x rule",
     "Per source, load and quarantine rule: rows quarantined (rule '(none)' for clean loads), the load's counts and the source's freshness. Test outcomes of each build are in meta.builds.",
     [("source", "Source.", []), ("load_id", "Load id.", []), ("file", "File loaded.", []), ("loaded_at", "Load finished.", []),
      ("load_status", "loaded, skipped_same_hash, refused.", []), ("rule", "Quarantine rule, or '(none)'.", []),
      ("rows", "Rows quarantined by the rule.", []), ("rows_read", "Rows read.", []), ("rows_landed", "Rows landed.", []),
      ("rows_quarantined", "Rows quarantined.", []), ("rows_duplicate", "Duplicate rows skipped.", []),
      ("source_last_loaded_at", "Latest successful load of the source (freshness).", []), ("message", "Load message.", [])]),
    ("build_info", "one row", "This build: id, as_of (the moment 'now' for open items) and build time.",
     [("build_id", "Build id.", nn()), ("as_of", "Latest past intake or scheduling event, or the as_of var.", nn()),
      ("as_of_source", "data or var.", []), ("built_at", "When built.", [])]),
]

MART_TESTS = {
    "referral_funnel": [{"timestamps_in_order": {"name": "referral_funnel_stages_in_order", "description": "Stage order received -> contacted -> scheduled -> evaluated -> plan_of_care -> active -> discharged (DESIGN.md). The model implies a stage by the next one (contact by the booking, the plan by the second visit or the discharge), so clean data passes. Rows here are expected dirt: a re-sent received event later than the contact (latest version wins), a re-sent booking of an evaluation already attended, or a quarantined completion event.", "arguments": {"columns": ["received_at", "contacted_at", "scheduled_at", "evaluated_at", "plan_of_care_at", "active_at", "discharged_at"]}, **W}},
                        {"timestamps_in_order": {"arguments": {"columns": ["evaluated_at", "active_at", "discharged_at"]}, **E}}],
    "claims": [{"expression_is_true": {"arguments": {"expression": "abs(billed_usd - (payer_paid_usd + contractual_adj_usd + patient_resp_usd + write_off_usd + insurance_balance_usd)) < 0.005"}, **E}},
               {"expression_is_true": {"arguments": {"expression": "abs(patient_resp_usd - (patient_paid_usd + patient_balance_usd)) < 0.005"}, **E}},
               {"expression_is_true": {"description": "Expected dirt: a negative open balance comes from remittance rows quarantined at ingestion (e.g. a patient-responsibility adjustment), so payments outweigh what is owed.", "arguments": {"expression": "insurance_balance_usd > -0.005 and patient_balance_usd > -0.005"}, **W}},
               {"expression_is_true": {"description": "Expected dirt: billed equals the sum of the claim's charge lines unless some of its lines were quarantined (missing id, negative units, unknown CPT).", "arguments": {"expression": "charge_lines = 0 or abs(billed_usd - charge_lines_usd) < 0.005"}, **W}}],
    "practice_kpis": [{"unique_combination": {"arguments": {"columns": ["clinic_id", "grain", "period_start", "kpi"]}, **E}}],
    "attribution_touches": [
        {"unique_combination": {"arguments": {"columns": ["referral_id", "touch_seq"]}, **E}},
        {"credits_sum_to_value": {"arguments": {"group_by": "referral_id", "total": "conversion_value_usd",
                                                "models": ["first", "last", "linear", "time_decay", "position"]}, **E}}],
    "attribution_roi": [{"unique_combination": {"arguments": {"columns": ["model", "channel", "month"]}, **E}}],
    "revenue_leakage": [{"unique_combination": {"arguments": {"columns": ["category", "clinic_id", "month"]}, **E}}],
    "data_quality": [{"unique_combination": {"arguments": {"columns": ["source", "load_id", "rule"]}, **E}}],
    "episodes": [{"expression_is_true": {"arguments": {"expression": "not early_dropout or is_closed"}, **E}},
                 {"expression_is_true": {"arguments": {"expression": "(status = 'active') = (discharge_date is null)"}, **E}}],
}


def mart_yaml():
    models = []
    for name, grain, desc, cols in MARTS:
        m = {"name": name, "description": desc, "config": {"meta": {"grain": grain}}, "columns": []}
        for cname, cdesc, tests in cols:
            c = {"name": cname, "description": cdesc}
            if tests:
                c["data_tests"] = tests
            m["columns"].append(c)
        if name in MART_TESTS:
            m["data_tests"] = MART_TESTS[name]
        models.append(m)
    return {"version": 2, "models": models}


INTERMEDIATE = [
    ("int_referrals_pivoted", "referral_id", "Intake events pivoted per referral: received attributes, first outreach / reached / contacted, the intake exit."),
    ("int_appointments_collapsed", "appointment_id", "Scheduling events folded per appointment as a lifecycle (book -> reschedule -> outcome; an outcome is final), with visit numbers."),
    ("int_remittances_attributed", "remit_id", "Every landed remittance with the clinic its money belongs to: the claim's, else its charge lines', else 'unattributed' (no cash lost in a join)."),
    ("int_notes_summarised", "episode_id", "Documentation per episode: evaluation, latest plan, discharge summary, outcome scores."),
    ("int_notes_unsigned", "note_id", "Notes still unsigned (clinician queue)."),
    ("int_charge_lines_classified", "charge_id", "Charge lines with the units-per-visit code family (G- and L-codes excluded)."),
    ("int_claims_reconciled", "claim_id", "Claims with remittances summed by kind and charge lines summed."),
    ("int_clocks_resolved", "one row", "The build's as_of: latest past intake or scheduling event, or the as_of var."),
    ("int_kpi_facts_aggregated", "clinic_id x date_day x kpi", "Additive KPI numerators and denominators per clinic and day."),
    ("int_ar_balances_daily", "clinic_id x date_day", "Open A/R at the end of each day and the charges of the 90 days ending then."),
    ("int_touches_sequenced", "referral_id x touch_seq", "Every referral's touch path: marketing touches before receipt, then the referral source."),
    ("int_patient_keys", "pid", "One row per distinct patient id of any source with its keyed pseudonym patient_key (HMAC-SHA256 with the installation secret, UDF ptpulse_pseudonym); the patient_key macro looks keys up here. Never copied to the de-identified twin."),
    ("int_touches_credited", "referral_id x touch_seq", "Conversion touches with first, last, linear, time-decay and position-based shares and dollar credits."),
]

INT_TESTS = {
    "int_referrals_pivoted": {"referral_id": pk()},
    "int_appointments_collapsed": {"appointment_id": pk()},
    "int_notes_summarised": {"episode_id": pk()},
    "int_claims_reconciled": {"claim_id": pk()},
    "int_remittances_attributed": {"remit_id": pk()},
    "int_ar_balances_daily": {},
    "int_patient_keys": {"pid": pk()},
}


def int_yaml():
    models = []
    for name, grain, desc in INTERMEDIATE:
        m = {"name": name, "description": desc, "config": {"meta": {"grain": grain}}}
        cols = INT_TESTS.get(name)
        if cols:
            m["columns"] = [{"name": c, "description": f"{c} (grain).", "data_tests": t} for c, t in cols.items()]
        models.append(m)
    models_by = {m["name"]: m for m in models}
    models_by["int_kpi_facts_aggregated"]["data_tests"] = [
        {"unique_combination": {"arguments": {"columns": ["clinic_id", "date_day", "kpi"]}, **E}}]
    models_by["int_touches_sequenced"]["data_tests"] = [
        {"unique_combination": {"arguments": {"columns": ["referral_id", "touch_seq"]}, **E}}]
    return {"version": 2, "models": models}


def main():
    (HERE / "models/marts/_marts.yml").write_text(
        "# generated by scripts/gen_mart_docs.py\n" + yaml.safe_dump(mart_yaml(), sort_keys=False, width=120))
    (HERE / "models/intermediate/_intermediate.yml").write_text(
        "# generated by scripts/gen_mart_docs.py\n" + yaml.safe_dump(int_yaml(), sort_keys=False, width=120))


if __name__ == "__main__":
    main()
