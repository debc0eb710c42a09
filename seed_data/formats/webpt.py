"""The practice as a WebPT Standard Extract (nightly CSV tables over SFTP), written from the native CSVs.

Column lists: ingestion/profiles/webpt_standard_extract.yml (from WebPT's help pages, copied in
../shared/interop/outside/vendor-layouts/). Every table the profile maps is written, one row per current
record, `export_flag` 1 (added) where the table has one; dates `MM/DD/YYYY`, timestamps
`MM/DD/YYYY HH:MM:SS AM` (clinic local time). Vendor ids are our ids: a practice's WebPT ids are its record
ids, so the profile lands them as exported and they merge with the native rows of the same records.

- `webpt_appointments.csv`: one row per appointment: start/end from the latest scheduled start and
  duration, check-in / check-out from the arrived / completed events, `time_stamp` = when it was booked,
  `appointment_status` Inactive for cancelled / late-cancelled / no-show (WebPT says no more: which one
  lives in the undocumented visits table), `reason` = cancel reason, `appointment_type` Initial Evaluation /
  Re-Evaluation / Daily Note.
- `webpt_authorizations.csv`: one row per authorization, insurance by name (`ins_name`), `modified_date` =
  the day it was received.
- `webpt_charges.csv` (EMR charges): one row per charge line, `record_pointer` = charge_id, `visit_id` =
  the visit's note, `note_type` IE/RE/PN/DN/DS, `note_finalized_date` = the day the line was posted.
- `webpt_transactions.csv`: patient payments collected at the front desk (`txn_paid` 1).

Not written: RevFlow billing_charges / patient_credit (running totals and undocumented credit types: the
money of claims comes as 835 in the x12 format), and the 12 tables whose columns are undocumented
(patients, cases, visits, clinics, therapists, patient_insurance, ...).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from seed_data.formats._native import read

DATE, STAMP = "%m/%d/%Y", "%m/%d/%Y %I:%M:%S %p"
APPOINTMENT_TYPE = {"initial_eval": "Initial Evaluation", "re_eval": "Re-Evaluation", "follow_up": "Daily Note"}
NOTE_TYPE = {
    "initial_eval": "IE",
    "re_eval": "RE",
    "progress_note": "PN",
    "daily_note": "DN",
    "discharge_summary": "DS",
}
# payer_class -> WebPT insurance_type_id (documented codes; the profile maps them back)
INSURANCE_TYPE = {
    "commercial": "9",
    "medicare": "3",
    "medicare_advantage": "16",
    "medicaid": "6",
    "workers_comp": "7",
    "auto_pi": "10",
    "self_pay": "5",
}
INACTIVE = ("cancelled", "late_cancelled", "no_show")

APPOINTMENT_COLUMNS = [
    "appointmnet_id",
    "parent_appointment_id",
    "start_date",
    "end_date",
    "check_in_time",
    "check_out_time",
    "calendar_title",
    "clinic_id",
    "therapist_id",
    "appointment_type",
    "case_id",
    "patient_id",
    "appointment_status",
    "appointment_creator_id",
    "apt_apttype",
    "visit_comment",
    "reason",
    "time_stamp",
]
AUTH_COLUMNS = [
    "record_id",
    "authorization_id",
    "case_id",
    "auth_number",
    "auth_start_date",
    "auth_end_date",
    "visit_authorized_for",
    "notes",
    "authorization_status",
    "patient_id",
    "clinic_id",
    "modified_date",
    "ins_name",
    "policy_number",
    "group_number",
    "payer_type",
    "export_flag",
]
CHARGE_COLUMNS = [
    "record_id",
    "visit_date",
    "record_pointer",
    "cpt",
    "clinic_id",
    "patient_id",
    "case_id",
    "visit_id",
    "therapist_id",
    "cosign_therapist_id",
    "insurance_id",
    "insurance_type_id",
    "units",
    "charge_amount",
    "cpt_code_id",
    "client_id",
    "note_type",
    "cpt_prefix",
    "cpt_suffix",
    "cpt_modifier",
    "modified_date",
    "note_finalized_date",
    "PrimaryIns",
]
TRANSACTION_COLUMNS = [
    "record_id",
    "otc_id",
    "case_id",
    "visit_date",
    "payment_date",
    "dollar_amount_paid",
    "patient_id",
    "description",
    "clinic_id",
    "txn_paid",
    "txn_status",
    "txn_txntypeid",
    "modified_date",
    "export_flag",
]


def _money(expr: pl.Expr) -> pl.Expr:
    cents = (expr.cast(pl.Float64) * 100).round(0).cast(pl.Int64)
    return pl.concat_str([(cents // 100).cast(pl.String), pl.lit("."), (cents % 100).cast(pl.String).str.zfill(2)])


def _write(out: Path, name: str, df: pl.DataFrame, columns: list[str]) -> int:
    """Vendor column order; columns we have no value for are empty (as in a real extract)."""
    df = df.select(
        [pl.col(c).cast(pl.String) if c in df.columns else pl.lit(None, pl.String).alias(c) for c in columns]
    )
    df.write_csv(out / name, null_value="", line_terminator="\n")
    return df.height


def write(native: Path, out: Path) -> dict[str, int]:
    """Write the Standard Extract tables of the practice in `native` to `out`; returns {file: rows}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {"webpt_appointments.csv": _write(out, "webpt_appointments.csv", _appointments(native), APPOINTMENT_COLUMNS)}
    rows["webpt_authorizations.csv"] = _write(out, "webpt_authorizations.csv", _authorizations(native), AUTH_COLUMNS)
    rows["webpt_charges.csv"] = _write(out, "webpt_charges.csv", _charges(native), CHARGE_COLUMNS)
    rows["webpt_transactions.csv"] = _write(out, "webpt_transactions.csv", _transactions(native), TRANSACTION_COLUMNS)
    return rows


def _appointments(native: Path) -> pl.DataFrame:
    ev = read(native, "scheduling_events").sort("event_at", "event_id")
    at = pl.col("event_at")
    kind = pl.col("event_type")
    appt = ev.group_by("appointment_id", maintain_order=True).agg(
        booked=at.filter(kind == "booked").min(),
        creator=pl.col("recorded_by").filter(kind == "booked").first(),
        arrived=at.filter(kind == "arrived").max(),
        completed=at.filter(kind == "completed").max(),
        outcome=kind.filter(kind.is_in(INACTIVE)).last(),
        reason=pl.col("cancel_reason").drop_nulls().last(),
        start=pl.col("scheduled_start").drop_nulls().last(),
        duration=pl.col("duration_min").drop_nulls().last(),
        **{
            c: pl.col(c).drop_nulls().last()
            for c in ("episode_id", "patient_id", "clinic_id", "therapist_id", "visit_type")
        },
    )
    return appt.sort("booked", "appointment_id").select(
        appointmnet_id=pl.col("appointment_id"),
        start_date=pl.col("start").dt.strftime(STAMP),
        end_date=(pl.col("start") + pl.duration(minutes=pl.col("duration"))).dt.strftime(STAMP),
        check_in_time=pl.col("arrived").dt.strftime(STAMP),
        check_out_time=pl.col("completed").dt.strftime(STAMP),
        clinic_id=pl.col("clinic_id"),
        therapist_id=pl.col("therapist_id"),
        appointment_type=pl.col("visit_type").replace_strict(APPOINTMENT_TYPE, default="Daily Note"),
        case_id=pl.col("episode_id"),
        patient_id=pl.col("patient_id"),
        appointment_status=pl.when(pl.col("outcome").is_not_null())
        .then(pl.lit("Inactive"))
        .otherwise(pl.lit("Active")),
        appointment_creator_id=pl.col("creator"),
        reason=pl.col("reason"),
        time_stamp=pl.col("booked").dt.strftime(STAMP),
    )


def _authorizations(native: Path) -> pl.DataFrame:
    payers = read(native, "payers").select("payer_id", "payer_name", "payer_class")
    members = read(native, "patients").select("patient_id", "member_id")
    auth = (
        read(native, "authorizations")
        .join(payers, on="payer_id", how="left")
        .join(members, on="patient_id", how="left")
    )
    return auth.sort("received_at", "auth_id").select(
        record_id=pl.col("auth_id"),
        authorization_id=pl.col("auth_id"),
        case_id=pl.col("episode_id"),
        auth_start_date=pl.col("valid_from").dt.strftime(DATE),
        auth_end_date=pl.col("valid_to").dt.strftime(DATE),
        visit_authorized_for=pl.col("visits_authorized"),
        authorization_status=pl.lit("Active"),
        patient_id=pl.col("patient_id"),
        clinic_id=pl.col("clinic_id"),
        modified_date=pl.col("received_at").dt.strftime(DATE),
        ins_name=pl.col("payer_name"),
        policy_number=pl.col("member_id"),
        payer_type=pl.col("payer_class"),
        export_flag=pl.lit("1"),
    )


def _charges(native: Path) -> pl.DataFrame:
    notes = read(native, "documentation_events").filter(pl.col("appointment_id").is_not_null())
    notes = notes.sort("created_at").unique("appointment_id", keep="first", maintain_order=True)
    claims = read(native, "claims").select("claim_id", "payer_id")
    payers = read(native, "payers").select("payer_id", "payer_name", "payer_class")
    ch = (
        read(native, "charges")
        .join(notes.select("appointment_id", "note_id", "note_type"), on="appointment_id", how="left")
        .join(claims, on="claim_id", how="left")
        .join(payers, on="payer_id", how="left")
    )
    return ch.sort("posted_at", "charge_id").select(
        record_id=pl.col("charge_id"),
        visit_date=pl.col("service_date").dt.strftime(DATE),
        record_pointer=pl.col("charge_id"),
        cpt=pl.col("cpt_code"),
        clinic_id=pl.col("clinic_id"),
        patient_id=pl.col("patient_id"),
        case_id=pl.col("episode_id"),
        visit_id=pl.col("note_id"),
        therapist_id=pl.col("therapist_id"),
        insurance_id=pl.col("payer_id"),
        insurance_type_id=pl.col("payer_class").replace_strict(INSURANCE_TYPE, default=None),
        units=pl.col("units"),
        charge_amount=_money(pl.col("charge_usd")),
        note_type=pl.col("note_type").replace_strict(NOTE_TYPE, default="DN"),
        cpt_modifier=pl.col("modifiers").str.replace_all(r"\|", ","),
        modified_date=pl.col("posted_at").dt.strftime(DATE),
        note_finalized_date=pl.col("posted_at").dt.strftime(DATE),
        PrimaryIns=pl.col("payer_name"),
    )


def _transactions(native: Path) -> pl.DataFrame:
    claims = read(native, "claims").select("claim_id", "episode_id", "patient_id", "clinic_id", "service_date")
    pay = (
        read(native, "remittances")
        .filter(pl.col("event_type") == "patient_payment")
        .drop("episode_id", "service_date")  # the claim's: native payments name their claim
        .join(claims, on="claim_id")
    )
    return pay.sort("event_at", "remit_id").select(
        record_id=pl.col("remit_id"),
        otc_id=pl.col("remit_id"),
        case_id=pl.col("episode_id"),
        visit_date=pl.col("service_date").dt.strftime(DATE),
        payment_date=pl.col("event_at").dt.strftime(DATE),
        dollar_amount_paid=_money(pl.col("amount_usd")),
        patient_id=pl.col("patient_id"),
        description=pl.lit("Patient payment"),
        clinic_id=pl.col("clinic_id"),
        txn_paid=pl.lit("1"),
        txn_status=pl.lit("Paid"),
        modified_date=pl.col("event_at").dt.strftime(DATE),
        export_flag=pl.lit("1"),
    )
