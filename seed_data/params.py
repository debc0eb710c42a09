"""Every tunable number of the synthetic practice, in one place, so realism is reviewed here, not hunted.

Sources of the target bands: the KPI table of docs/architecture.md / dbt_project/seeds/kpi_definitions.csv and the PT benchmarks they cite (WebPT, Net Health,
APTA): ~10% no-shows, ~20% early dropout, < 50% plan-of-care completion, 6-11 visits per discharge,
3-4 units per visit, ~$100-110 net revenue per visit, <= 5-10% denials.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

DEFAULT_AS_OF = date(2026, 10, 31)
FUTURE_DAYS = 28  # appointments already booked this far past as_of are kept (booked/rescheduled only)


@dataclass(frozen=True)
class Scale:
    clinics: int
    years: int
    chunk: int  # clinics generated and appended together (memory stays flat)


SCALES: dict[str, Scale] = {
    "small": Scale(clinics=1, years=2, chunk=1),
    "medium": Scale(clinics=25, years=3, chunk=5),
    "large": Scale(clinics=900, years=3, chunk=5),
    # tests only (not offered by the CLI): the cheapest multi-clinic run, two clinics streamed in two chunks,
    # so cross-clinic and cross-chunk id/offset bugs show up without generating `medium`
    "multi_test": Scale(clinics=2, years=1, chunk=1),
}

# --- capacity -------------------------------------------------------------------------------------------
THERAPISTS_MIN, THERAPISTS_MAX = 3, 8
WEEKLY_HOURS = (24.0, 30.0, 32.0, 36.0, 40.0)
WEEKLY_HOURS_P = (0.10, 0.20, 0.25, 0.25, 0.20)
TARGET_UTILIZATION = 0.80  # booked minutes / available minutes
APPTS_PER_REFERRAL = 5.7  # capacity -> referral rate; tuned so booked/available minutes lands at ~0.8
EVAL_MIN, FOLLOW_UP_MIN, RE_EVAL_MIN = 60, 45, 45

# --- intake funnel --------------------------------------------------------------------------------------
SOURCE_TYPE_P = {"physician": 0.58, "direct_access": 0.14, "marketing": 0.28}
PHYSICIANS_PER_CLINIC = (24, 40)
FADING_SHARE = 0.12  # of physicians; their volume falls to ~10% over the last FADE_DAYS
FADE_DAYS = 180
# Pre-scheduling exits (shares of referrals; marketing leads use the channel model below instead)
P_UNREACHABLE = 0.07
P_DECLINED = 0.07
P_INSURANCE_DENIED = 0.03
P_LOST = 0.05
P_EVAL_REBOOK = 0.55  # eval missed -> rebooked once with this probability, else the referral is lost
CONTACT_HOURS_MEDIAN = 1.5
EVAL_LAG_BDAYS = (1, 2, 3, 4, 5, 6, 7, 8, 10)
EVAL_LAG_P = (0.14, 0.24, 0.22, 0.15, 0.10, 0.06, 0.04, 0.03, 0.02)
RETURNING_PATIENT_P = 0.06

CHANNELS = ("search_ads", "social", "organic_web", "events", "employer", "word_of_mouth")
# logit contribution of a channel appearing on the path (its true incremental effect on scheduling)
CHANNEL_LOGIT = {
    "search_ads": 0.55,
    "social": -0.10,
    "organic_web": 0.35,
    "events": 0.04,
    "employer": 0.70,
    "word_of_mouth": 0.95,
}
CHANNEL_BASE_LOGIT = 0.15  # for marketing leads before channel effects
CHANNEL_DROPOUT_MULT = {
    "search_ads": 1.0,
    "social": 1.25,
    "organic_web": 1.0,
    "events": 1.15,
    "employer": 0.85,
    "word_of_mouth": 0.75,
}
# monthly budget per clinic at 5 therapists (USD), scaled by clinic size; organic_web and word_of_mouth are
# unpaid (their rows carry 0 spend): their volume follows SEO growth and past patients, not a budget
CHANNEL_BUDGET = {
    "search_ads": 1800.0,
    "social": 900.0,
    "organic_web": 0.0,
    "events": 500.0,
    "employer": 600.0,
    "word_of_mouth": 0.0,
}
CHANNEL_BUDGET_MIX_SD = 0.30  # lognormal sd of a clinic's plan around the budget (clinics weight channels differently)
CHANNEL_SPEND_NOISE_SD = 0.30  # month-to-month lognormal noise around the plan
CHANNEL_PAUSE_P = {"search_ads": 0.10, "social": 0.20, "events": 0.55, "employer": 0.25}  # months with no spend
# How spend becomes leads (the marketing-mix truth): geometric adstock (share carried into the next month) then
# a Hill curve of adstocked spend relative to the clinic's plan: P(lead kept) = a^s / (a^s + half^s)
CHANNEL_ADSTOCK = {"search_ads": 0.10, "social": 0.30, "events": 0.60, "employer": 0.50}
CHANNEL_HILL_HALF = {"search_ads": 0.8, "social": 1.0, "events": 1.2, "employer": 1.0}
CHANNEL_HILL_SLOPE = {"search_ads": 1.0, "social": 1.2, "events": 1.0, "employer": 1.5}
# share of marketing leads per channel at the planned budget (unpaid channels at their average level)
CHANNEL_LEAD_SHARE = {
    "search_ads": 0.33,
    "social": 0.19,
    "organic_web": 0.14,
    "events": 0.04,
    "employer": 0.10,
    "word_of_mouth": 0.20,
}
# Social lead forms intercept people who would have called the clinic directly: each social lead displaces this
# many direct-access referrals (who schedule far more often), so social's incremental effect is negative
SOCIAL_DISPLACEMENT = 1.0
ORGANIC_LEVEL = (0.40, 0.65)  # P(lead kept) at history start and end: SEO grows
WORD_OF_MOUTH_LEVEL = 0.55
UNPAID_NOISE_SD = 0.15
TOUCHES_P = (0.30, 0.28, 0.20, 0.13, 0.09)  # 1..5 touches
DIRECT_ACCESS_TOUCHED_P = 0.35  # direct-access leads that also have marketing touches
PHYSICIAN_TOUCHED_P = 0.05

# --- no-show model (logit) ------------------------------------------------------------------------------
NS_BASE = -3.70
NS_CLINIC_SD = 0.25
NS_PATIENT_SD = 0.85
NS_LEAD_PER_LOG_DAY = 0.30  # per log1p(lead days)
NS_PRIOR = 0.45  # per prior no-show in the episode (capped at 3)
NS_AGE_12_30 = 0.45
NS_MON_FRI = 0.25
NS_GAP_PER_WEEK = 0.22  # per week since the last attended visit beyond the first (capped)
NS_EVAL = 0.10
NS_DROPOUT_INTENT = 1.10  # latent: last appointment before a patient quits
NS_MEDICAID = 0.35
P_LATE_CANCEL = 0.035
P_CANCEL = 0.075
P_RESCHEDULE = 0.10

# --- plan of care and dropout ---------------------------------------------------------------------------
FREQ = (1, 2, 3)
FREQ_P = (0.12, 0.63, 0.25)
PLAN_WEEKS = (4, 6, 8, 10, 12)
PLAN_WEEKS_P = (0.25, 0.35, 0.25, 0.10, 0.05)
DROP_AFTER_VISIT = {1: 0.105, 2: 0.095}  # hazard of quitting after visit n
DROP_LATER = 0.105
P_FORMAL_DISCHARGE_EARLY = 0.18  # early stop after visit >= 4 with a discharge summary (goals met etc.)
P_SELF_DISCHARGE_SUMMARY = 0.45
P_RE_EVAL = 0.30  # episodes with > 12 planned visits get a re-evaluation near visit 13

# --- documentation --------------------------------------------------------------------------------------
P_SIGN_LATE = 0.04  # signed more than 24 h after the visit
P_UNSIGNED = 0.012

# --- billing --------------------------------------------------------------------------------------------
CPT_CHARGE = {
    "97161": 175.0,
    "97162": 195.0,
    "97163": 220.0,
    "97164": 115.0,
    "97110": 62.0,
    "97112": 66.0,
    "97116": 58.0,
    "97140": 60.0,
    "97530": 68.0,
    "97535": 62.0,
    "97750": 70.0,
    "97010": 25.0,
    "97014": 30.0,
    "G0283": 30.0,
    "97035": 32.0,
    "97032": 38.0,
    "20560": 75.0,
    "20561": 95.0,
    "L1902": 65.0,
    "L3908": 55.0,
}
TIMED_CODES = ("97110", "97140", "97112", "97530", "97116", "97535")
TIMED_CODES_P = (0.38, 0.22, 0.16, 0.14, 0.06, 0.04)
TIMED_MINUTES_MEAN, TIMED_MINUTES_SD = 46.0, 9.0
KX_THRESHOLD = {2022: 2150.0, 2023: 2230.0, 2024: 2330.0, 2025: 2410.0, 2026: 2480.0, 2027: 2550.0}

# payer class -> (allowed % of charges, pay lag mean days, lag sd, denial prob, share of patients <65)
PAYER_CLASS = {
    "commercial": dict(allowed=0.58, lag=24, lag_sd=8, deny=0.065),
    "medicare": dict(allowed=0.50, lag=16, lag_sd=4, deny=0.045),
    "medicare_advantage": dict(allowed=0.48, lag=30, lag_sd=9, deny=0.09),
    "medicaid": dict(allowed=0.36, lag=38, lag_sd=12, deny=0.085),
    "workers_comp": dict(allowed=0.78, lag=50, lag_sd=15, deny=0.07),
    "auto_pi": dict(allowed=0.82, lag=80, lag_sd=25, deny=0.06),
    "self_pay": dict(allowed=0.45, lag=1, lag_sd=1, deny=0.0),
}
P_APPEAL_RECOVERED = 0.45
P_PATIENT_PAYS = 0.86
P_PATIENT_PAYS_PARTIAL = 0.05
DENIAL_CARC = ("197", "50", "16", "29", "96", "151", "119", "204", "27", "18")
DENIAL_CARC_P = (0.22, 0.18, 0.20, 0.05, 0.07, 0.09, 0.07, 0.05, 0.04, 0.03)

# payer_id, name, class, requires_auth, auth_visit_limit, market share among <65 / >=65
PAYERS = (
    ("PY01", "Blue Cross Blue Shield PPO", "commercial", False, None, 0.20, 0.02),
    ("PY02", "Aetna Choice POS II", "commercial", True, 12, 0.12, 0.01),
    ("PY03", "UnitedHealthcare Choice Plus", "commercial", False, None, 0.14, 0.02),
    ("PY04", "Cigna Open Access Plus", "commercial", True, 20, 0.09, 0.01),
    ("PY05", "Medicare Part B", "medicare", False, None, 0.02, 0.52),
    ("PY06", "Humana Medicare Advantage", "medicare_advantage", True, 12, 0.00, 0.18),
    ("PY07", "UHC Medicare Advantage", "medicare_advantage", True, 8, 0.00, 0.14),
    ("PY08", "State Medicaid", "medicaid", True, 8, 0.10, 0.04),
    ("PY09", "Molina Medicaid Managed Care", "medicaid", True, 12, 0.07, 0.02),
    ("PY10", "Liberty Mutual Workers Comp", "workers_comp", True, 12, 0.08, 0.00),
    ("PY11", "State Farm Auto PIP", "auto_pi", False, None, 0.06, 0.02),
    ("PY12", "Self Pay", "self_pay", False, None, 0.07, 0.02),
    ("PY13", "Tricare", "commercial", False, None, 0.05, 0.02),
)

# --- seasonality ----------------------------------------------------------------------------------------
MONTH_FACTOR = (1.18, 1.06, 1.05, 1.02, 1.00, 0.95, 0.88, 0.90, 1.00, 1.03, 0.97, 0.86)
WEEKDAY_REFERRAL = (1.25, 1.10, 1.05, 1.00, 0.95, 0.12, 0.05)  # Mon..Sun
SATURDAY_THERAPIST_P = 0.10
