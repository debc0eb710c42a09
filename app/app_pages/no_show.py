"""No-show risk (manager, owner): upcoming appointments most likely to be missed, with the model's reasons,
so the front desk can confirm them; how well the predicted percentages match what happened (calibration);
and the model card."""

from datetime import datetime

import streamlit as st

from app.lib import charts, labels, model_cards, send_ui, ui
from app.lib.formatting import fmt, reference_now
from app.lib.queries.no_show import calibration, no_show_history, upcoming_by_band, upcoming_risk
from app.lib.queries.work_queue import HIGH_RISK_RULE, queued_appointments

# the model learnt from appointments never cancelled (ml/features.labelled_targets): its probabilities are of a
# no-show among the appointments that are kept, so the page must not sell their sum as missed slots
KEPT_ONLY = (
    "{what} among these appointments if they are kept. The model learnt from appointments that were never "
    "cancelled, so some of these will still be cancelled (not counted here) and the number of slots left empty will "
    "differ from this figure."
)

ctx = ui.page("no_show")
ui.require_tables(ctx, "ml.no_show_scores", "marts.appointments", what="No-show risk")
ui.model_status_notice(ctx)  # models/status.json unreadable: say so, no traceback
if skipped := model_cards.not_enough_data(ctx.settings, "no_show"):  # too little data: say why, no empty charts
    st.info(skipped)
    st.stop()
f = ctx.filters
start = ctx.as_of or reference_now(None, datetime.now())

# a model that lost to its logistic baseline is not served: a message instead of its scores
ns_card = model_cards.no_show_card(ctx.settings)
verdict, verdict_text = model_cards.no_show_verdict(ns_card)
comparison = (ns_card.get("baseline_comparison") or {}) if isinstance(ns_card, dict) else {}
if (
    verdict == "fallback"
    and ns_card.get("deployed_model") == "logistic_regression"
    and comparison.get("chosen_by_default")
):
    # too few appointments to compare the two models (ml/README.md, "Minimum data per model"): the trees were never
    # measured, so not "the gradient-boosted model ranked no-shows worse"
    verdict_text = (
        "Scores come from a logistic regression, chosen by default: there are too few past appointments yet to "
        "compare it with the gradient-boosted model. The model card below says more."
    )
if verdict == "refuse":
    st.error(verdict_text)
elif verdict == "fallback":
    st.info(verdict_text)
elif verdict_text:  # the card cannot be read: say so, keep the scores of the last build
    st.warning(verdict_text)

days = st.slider("Look ahead (days)", 1, 30, 14, key="ns_days")
if verdict != "refuse":
    bands = upcoming_by_band(ctx.reader, f, start, days)
    high = upcoming_risk(ctx.reader, f, start, days, band="high")  # the rows listed; the rest are counted in SQL
    scored = int(bands["appointments"].sum())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Scored upcoming appointments", fmt(scored, "count"), border=True)
    c2.metric(
        "High risk",
        fmt(len(high), "count"),
        border=True,
        help="The top 10% of upcoming appointments by risk in each clinic (ranked over every scored "
        "upcoming appointment, so a shorter look-ahead shows part of that list).",
    )
    c3.metric(
        "Expected no-shows",
        fmt(bands["expected_no_shows"].sum(), "count"),
        border=True,
        help=KEPT_ONLY.format(what="Sum of predicted probabilities: the no-shows expected"),
    )
    c4.metric(
        "Expected no-show rate",
        fmt(bands["expected_no_shows"].sum() / scored if scored else None, "pct"),
        border=True,
        help=KEPT_ONLY.format(what="Mean predicted probability: the no-show rate expected")
        + " US PT mean ≈10% (survey).",
    )

    left, right = st.columns([1, 2])
    with left:
        ui.chart(charts.risk_bands(bands), bands[["risk_band", "appointments"]], "no_show_risk_bands", "ns_bands")
    with right:
        # the Work queue gets a confirm task only for the high-risk visits within its own look-ahead (the ML step's
        # window, shorter than this page's): say which of the listed ones it holds, from its actual tasks
        servable = model_cards.no_show_servable(ctx.settings)
        queued = queued_appointments(ctx.reader, f, HIGH_RISK_RULE, scores_servable=servable)
        high = high.assign(in_work_queue=high["appointment_id"].astype(str).isin(queued))
        st.markdown("**High-risk appointments to confirm**")
        st.caption(
            f"{int(high['in_work_queue'].sum()):,} of these {len(high):,} are in the Work queue as confirm tasks "
            "(column “In work queue”). The queue takes a high-risk visit only once it is a few days away, so the "
            "others join it in a later build if they are still high risk."
        )
        ui.table(
            labels.relabel_frame(high, {"visit_type": "visit_type", "risk_band": "risk_band"}),
            "high_risk_appointments",
            "ns_high",
            pinned=["scheduled_start"],
            column_config={
                "appointment_id": "Appointment",
                "clinic_id": "Clinic",
                "patient_name": "Patient",
                "phone": "Phone",
                "patient_key": "Patient key",
                "therapist_name": "Therapist",
                "visit_type": "Visit type",
                "visit_number": st.column_config.NumberColumn("Visit #", format="%d"),
                "risk_band": "Risk band",
                "model_version": "Model version",
                "probability": ui.pct("Risk"),
                "scheduled_start": st.column_config.DatetimeColumn("When", format="ddd MMM D, HH:mm"),
                "reason_1": "Main reason",
                "reason_2": "Second reason",
                "in_work_queue": st.column_config.CheckboxColumn("In work queue"),
            },
            height=360,
            empty_message="No high-risk appointments in this window.",
        )

    # Bulk reminders (outbound, app/lib/send_ui.py): tomorrow's high-risk list, previewed before sending.
    with st.expander("Send reminders to the next clinic day's high-risk appointments", icon=":material/send:"):
        # the next clinic day after today by the reference clock (the Work queue's): the wall clock while the data is
        # current (a build's as_of is the evening before), so the list is never today's appointments, some over
        send_ui.high_risk_dialog(ctx, reference_now(ctx.as_of, datetime.now()).date())

st.subheader("Can the percentages be trusted?")
left, right = st.columns(2)
with left:
    if verdict == "refuse":
        st.info("Calibration of the withheld model is in its model card below.")
    elif ctx.user.scope.clinics is not None:  # its bins count every clinic's test appointments
        st.info("Calibration covers every clinic's appointments: it is shown to users of every clinic.")
    elif ctx.reader.has("ml.no_show_calibration"):
        cal = calibration(ctx.reader)
        ui.chart(charts.calibration(cal), cal, "no_show_calibration", "ns_cal")
    else:
        st.info("Calibration appears after the model has been evaluated (`ptpulse train`).")
with right:
    hist = no_show_history(ctx.reader, f)
    ui.chart(charts.observed_no_show(hist), hist, "observed_no_show_rate", "ns_hist")

st.subheader("Model card")
cards = (
    sorted(
        p
        for p in ctx.settings.models_dir.rglob("*")
        if p.is_file()
        and "card" in p.name.lower()
        and "no_show" in str(p).replace("-", "_").lower()
        and p.suffix in (".md", ".json")
    )
    if ctx.settings.models_dir.exists()
    else []
)
if cards:
    card = cards[-1]
    scope = ctx.user.scope.clinics  # the 'By subgroup -> clinic' rows of the user's clinics only
    if card.suffix == ".md":
        text = card.read_text(encoding="utf-8", errors="replace")
        st.markdown(labels.in_words(model_cards.scoped_card_markdown(text, scope)))
    elif model_cards.is_unreadable(data := model_cards.read_json(card) or dict(model_cards.UNREADABLE)):
        st.warning("The model card file cannot be read; the next training (`ptpulse train`) rewrites it.")
    else:
        st.json(model_cards.scoped_card_json(data, scope), expanded=False)
    st.caption(f"Written by the last training, {datetime.fromtimestamp(card.stat().st_mtime):%Y-%m-%d %H:%M}.")
else:
    st.caption("No model card file found under the models folder yet (`ptpulse train` writes it).")
