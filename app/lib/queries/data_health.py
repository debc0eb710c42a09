"""Data health: loads, quarantine by rule, freshness per source, how rows link across sources and the build
history."""

from __future__ import annotations

import pandas as pd

from app.lib.queries.base import Reader


def loads(r: Reader) -> pd.DataFrame:
    """One row per load. Roles that see PHI get the file's own name (never the server path it was read from);
    the others get neither the name nor a message quoting it: exporters name files after patients (Synthea's
    `<Given>_<Family>_<uuid>.json`), which is why the de-identified twin has no `file` column either."""
    name = "regexp_extract(file, '[^/\\\\]+$')"
    file, message = f"{name} as file,", "any_value(message)"
    if not r.scope.phi:
        file, message = "", f"any_value(replace(replace(message, file, '(file)'), {name}, '(file)'))"
    sql = f"""
    select source, load_id, {file} loaded_at,
           any_value(load_status) as status, any_value(rows_read) as rows_read,
           any_value(rows_landed) as rows_landed, any_value(rows_quarantined) as rows_quarantined,
           any_value(rows_duplicate) as rows_duplicate, {message} as message
    from marts.data_quality group by source, load_id, file, loaded_at order by loaded_at desc, load_id desc
    """
    return r.df(sql)


def quarantine_by_rule(r: Reader) -> pd.DataFrame:
    return r.df(
        "select source, rule, sum(rows) as rows from marts.data_quality where rule <> '(none)' and rows > 0 "
        "group by all order by rows desc"
    )


def code_warnings(r: Reader) -> pd.DataFrame:
    """Landed rows flagged with a warning (a code not in its code list): counted, never quarantined."""
    if not r.has("marts.data_quality_warnings"):
        return pd.DataFrame()
    return r.df(
        "select source, column_name, code_list, rule, sum(rows) as rows, count(distinct load_id) as loads "
        "from marts.data_quality_warnings group by all order by rows desc"
    )


def source_coverage(r: Reader) -> pd.DataFrame:
    """Every source the build knows, loaded or not (which export lights up which page)."""
    if not r.has("marts.source_coverage"):
        return pd.DataFrame()
    return r.df(
        "select source, is_loaded, rows_in_build, files_loaded, files_refused, last_loaded_at "
        "from marts.source_coverage order by is_loaded desc, source"
    )


# marts.link_health's sources and reasons in plain words (the reasons are int_visit_links' unlinked_reason)
LINK_SOURCES = {
    "charges": "Charge lines",
    "claims": "Claims",
    "documentation_events": "Clinical notes",
    "charge_claims": "Charge lines (their claim)",
    "remittances": "Payments and adjustments (835, EOB, EMR front desk)",
}
LINK_REASONS = {
    "no_visit_on_date": "No attended visit of the patient on the date of service: the visit is missing from the "
    "scheduling export, was cancelled, or the patient could not be matched across exports.",
    "several_visits_on_date": "The patient had several visits that day and the rendering therapist does not say "
    "which one.",
    "no_episode_on_date": "No episode of care of the patient spans the date of service.",
    "several_episodes_on_date": "More than one episode of care of the patient spans the date of service.",
    "no_claim_on_date": "No claim of the patient (a charge) or of the episode (a payment without claim number) "
    "on the date of service: load the claims or 837P export that has it.",
    "several_claims_on_date": "Several claims match the patient (or episode) and date of service, and the episode "
    "does not say which one.",
    "claim_not_loaded": "The claim they pay is not in this build: load the 837P or claims export that has it. "
    "The cash still counts in the practice's totals.",
}


# the headline counts each charge line, claim and note once (its visit link); a line's claim link and payments
# are listed by reason below it
VISIT_ROWS = "source not in ('remittances', 'charge_claims')"


def link_summary(r: Reader) -> dict[str, float]:
    """Headline: rows whose ids the exports carried, rows the linking rule placed, rows left unlinked (charge
    lines, claims, notes), and the cash of payments on claims this build does not hold."""
    if not r.has("marts.link_health"):
        return {}
    row = r.df(
        f"""
        select coalesce(sum(rows) filter (where link_status = 'carried' and {VISIT_ROWS}), 0) as carried,
               coalesce(sum(rows) filter (where link_status = 'linked' and {VISIT_ROWS}), 0) as linked,
               coalesce(sum(rows) filter (where link_status = 'unlinked' and {VISIT_ROWS}), 0) as unlinked,
               coalesce(sum(rows) filter (where reason = 'claim_not_loaded'), 0) as orphan_remits,
               coalesce(sum(amount_usd) filter (where reason = 'claim_not_loaded'), 0) as orphan_cash
        from marts.link_health
        """
    ).iloc[0]
    return {k: float(v) for k, v in row.items()}


def unlinked_rows(r: Reader) -> pd.DataFrame:
    """What could not be tied to a visit, an episode or a claim, by source and reason, in plain words."""
    if not r.has("marts.link_health"):
        return pd.DataFrame()
    df = r.df(
        "select source, reason, rows, amount_usd from marts.link_health where link_status = 'unlinked' "
        "order by rows desc, source, reason"
    )
    return pd.DataFrame(
        {
            "What": df["source"].map(LINK_SOURCES).fillna(df["source"]),
            "Rows": df["rows"],
            "Amount": df["amount_usd"],
            "Why": df["reason"].map(LINK_REASONS).fillna(df["reason"]),
        }
    )


def freshness(r: Reader) -> pd.DataFrame:
    sql = """
    select source, max(source_last_loaded_at) as last_loaded_at, max(loaded_at) as last_attempt_at,
           count(distinct load_id) as loads
    from marts.data_quality group by 1 order by last_loaded_at nulls first
    """
    return r.df(sql)


def builds(r: Reader, limit: int = 20) -> pd.DataFrame:
    if not r.has("meta.builds"):
        return pd.DataFrame()
    return r.df("select * from meta.builds order by started_at desc limit $limit", {"limit": int(limit)})
