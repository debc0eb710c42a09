"""Overview: the KPI tiles (this period against the previous one), a KPI's monthly trend and the clinic
comparison, all read from marts.practice_kpis.

Where the period asked for IS a mart period (one day, one Monday-Sunday week, one calendar month, for the
practice or one clinic), the tile shows the mart's own `value` for that row. Any other period (a custom
range, several months, several clinics) has no row of its own, so it is put together from the rows that
tile it: summed numerator / summed denominator, which is the mart's formula for every ratio KPI (each
row's value is its numerator / denominator), never an average of the rows' ratios. A balance KPI (days in A/R:
kpi_definitions.aggregation = 'last') is a point in time, not a flow: the range's value is the row of its last
period (the range's last day, or as_of if earlier), summed across the clinics, as the mart's own week and month
rows are; the same for the previous period, the same dates last year and the per-clinic comparison. Summing every
day's balance would show a weighted average of the daily values instead.

A KPI the mart keeps by month only (cost per new patient, attributed marketing ROI) covers every calendar
month the range touches, as the Attribution page does: Aug 3 - Oct 31 is August to October, never only the
months that *start* inside the range (which dropped August and disagreed with Attribution). The row says
which months it covers (`first_period`, `last_period`; formatting.covers_text). The previous period's months
stop before the current period's first month, so a comparison never counts a month on both sides. When the range
is N whole calendar months, such a KPI's previous period is the N calendar months just before it (July against
June, Q3 against Q2), not every month the previous N days touch; when the months a comparison covers differ from
its dates, the row says which (`previous_first_period` .. with `previous_period_grain`, `previous_asked_grain`).

A ratio row whose numerator is not known (cost per new patient of a month with no marketing spend reported: NULL
spend, kpi_definitions "has no value, not $0") is left out of both sums of a range, its denominator too
(`known_numerator`), and the row names the months left out (`unreported_periods`). Attributed ROI has no such
row: the mart counts a month without reported spend at $0 spend with its credited revenue (practice_kpis.sql),
and the range sums it so, as the Attribution page does.

A ratio whose summed denominator is zero or negative (a few days with adjustments but no charges give a
negative net-collection denominator) has no value: the tile shows "–" and says why, never -104.6%.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from app.lib.queries.base import CLINIC_FILTER, MATURITY_BAR, Filters, Reader, clinic_params

# Tile order: volume and access first, then care, then money.
KPI_ORDER: tuple[str, ...] = (
    "no_show_rate",
    "cancel_no_show_rate",
    "arrival_rate",
    "referral_conversion",
    "conversion_7day",
    "hours_to_first_contact",
    "business_days_to_first_visit",
    "visits_per_discharge",
    "poc_completion_rate",
    "early_dropout_rate",
    "units_per_visit",
    "net_revenue_per_visit",
    "days_in_ar",
    "net_collection_rate",
    "denial_rate",
    "therapist_utilization",
    "cost_per_new_patient",
    "attributed_roi",
)

_PRACTICE_OR_CLINICS = "case when $all_clinics then clinic_id = 'ALL' else list_contains($clinics, clinic_id) end"
_EACH_CLINIC = "clinic_id <> 'ALL' and " + CLINIC_FILTER
_GRAIN_RANK = "case grain when 'day' then 1 when 'week' then 2 else 3 end"


def mart_grain(start: date, end: date) -> str:
    """The coarsest practice_kpis grain whose periods tile [start, end] exactly (days always do)."""
    if start.day == 1 and (end + timedelta(days=1)).day == 1 and end >= start:
        return "month"
    if start.weekday() == 0 and end.weekday() == 6 and end >= start:
        return "week"
    return "day"


def _kpi_base(clinic_rows: str = _PRACTICE_OR_CLINICS, periods: tuple[str, ...] = ("",)) -> str:
    """CTE `rows`: practice_kpis for the practice ('ALL') or the chosen clinics' own rows, at the grain picked
    for each period (prefix p binds $<p>grain): that grain when the KPI has it, else the KPI's finest."""
    picks = ", ".join(
        f"case when bool_or(grain = ${p}grain) then ${p}grain else arg_min(grain, {_GRAIN_RANK}) end as {p}pick"
        for p in periods
    )
    return f"""
with grains as (
    select kpi, {picks} from marts.practice_kpis group by kpi
),
rows as (
    select k.*, {", ".join(f"g.{p}pick" for p in periods)}
    from marts.practice_kpis k join grains g using (kpi)
    where {clinic_rows} and k.grain in ({", ".join(f"g.{p}pick" for p in periods)})
)
"""


def _in_period(prefix: str = "") -> str:
    """Rows of one period of _kpi_base: its picked grain, between ${prefix}start and ${prefix}end; a KPI kept
    by month only (picked 'month' for a range that is not whole months, or for the previous period of one that
    is) takes its calendar months, ${prefix}month_start to ${prefix}month_end (_period_params)."""
    return (
        f"r.grain = r.{prefix}pick and case when r.{prefix}pick = 'month' and ${prefix}by_month "
        f"then r.period_start between ${prefix}month_start and ${prefix}month_end "
        f"else r.period_start between ${prefix}start and ${prefix}end end"
    )


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _months_back(d: date, n: int) -> date:
    """The first day of the calendar month n months before d's."""
    index = d.year * 12 + d.month - 1 - n
    return date(index // 12, index % 12 + 1, 1)


def _period_params(
    prefix: str, start: date, end: date, before: date | None = None, months: tuple[date, date] | None = None
) -> dict[str, object]:
    """Parameters of one period for _in_period: its dates, its grain and the calendar months a month-only KPI
    covers: every month the dates touch (stopping before `before`, the current period's first month, for the
    previous period), or `months` (first day of the first, last day of the last) when given."""
    month_start, month_end = months or (
        _month_start(start),
        end if before is None else min(end, before - timedelta(days=1)),
    )
    grain = mart_grain(start, end)
    return {
        f"{prefix}start": start,
        f"{prefix}end": end,
        f"{prefix}grain": grain,
        f"{prefix}by_month": grain != "month" or months is not None,
        f"{prefix}month_start": month_start,
        f"{prefix}month_end": month_end,
    }


def _previous_params(f: Filters) -> dict[str, object]:
    """The previous period: the same number of days just before (f.previous). A month-only KPI takes the calendar
    months before the current period's first: when the range is N whole months, the N months before it (July:
    June; Q3: April - June), else the months the previous days touch up to the current first month."""
    prev = f.previous
    if mart_grain(f.start, f.end) != "month":
        return _period_params("prev_", prev.start, prev.end, before=_month_start(f.start))
    n = (f.end.year - f.start.year) * 12 + f.end.month - f.start.month + 1
    return _period_params("prev_", prev.start, prev.end, months=(_months_back(f.start, n), f.start - timedelta(days=1)))


# The build's as_of day: no mart row lies after it, so a range running past it ends there.
_AS_OF_DAY = "(select max(as_of)::date from marts.build_info)"


def _last_period(prefix: str = "") -> str:
    """SQL: the first day of the last period of a range of _in_period(prefix) at the row's picked grain: the
    period holding the range's last day (a month-only KPI's last month touched), or as_of's when earlier."""
    end = f"case when r.{prefix}pick = 'month' and ${prefix}by_month then ${prefix}month_end else ${prefix}end end"
    return f"cast(date_trunc(r.{prefix}pick, least({end}, {_AS_OF_DAY})) as date)"


def _kept(last: str | None) -> str:
    """SQL: the rows of a group that make its value. Every row of a KPI summed over time (aggregation 'sum');
    for a balance (aggregation 'last', kpi_definitions) only the rows of `last`, the range's last period, one
    per clinic. `last` None: every group is one period (trend, year over year), so every row."""
    return "true" if last is None else f"(d.aggregation <> 'last' or r.period_start = {last})"


def known_numerator(alias: str = "r") -> str:
    """SQL: a practice_kpis row whose numerator is known. A ratio's row with a NULL numerator (cost per new
    patient of a month with no marketing spend reported: unknown, not $0) is left out of both sums of a range,
    so its denominator (that month's new patients) does not divide the other months' numerators. The Overview
    tiles and the Attribution page apply the same rule and name the months left out."""
    return f"{alias}.numerator is not null"


def _counted(last: str | None) -> str:
    """SQL: the rows of a group that enter its value: _kept, and for a ratio only those whose numerator is known."""
    return f"{_kept(last)} and (d.unit = 'count' or {known_numerator()})"


def _unreported(last: str | None = None) -> str:
    """SQL: the sorted distinct months (period starts) of a group left out for an unknown numerator, or null."""
    return (
        f"list_sort(list_distinct(list(r.period_start) filter (where {_kept(last)} and d.unit <> 'count' "
        f"and not {known_numerator()})))"
    )


def _kpi_value(last: str | None = None) -> str:
    """SQL: a KPI's value over a group of practice_kpis rows (joined to kpi_definitions d). One row = the mart's
    value for that exact period; several rows = the mart's formula over them, a ratio's rows of unknown numerator
    left out (known_numerator). A ratio whose denominator is zero or negative has no value (null), whatever the
    mart's row says."""
    k = _counted(last)
    den = f"sum(r.denominator) filter (where {k})"
    return f"""case when d.unit <> 'count' and {den} <= 0 then null
                     when count(*) filter (where {k}) = 1 then any_value(r.value) filter (where {k})
                     when d.unit = 'count' then sum(coalesce(r.numerator, r.value)) filter (where {k})
                     when {den} > 0 then sum(r.numerator) filter (where {k}) / {den}
                     else avg(r.value) filter (where {k}) end"""


def _kpi_denominator(last: str | None = None) -> str:
    """SQL: the denominator behind _kpi_value (a balance's at the range's last period; a ratio's rows of unknown
    numerator left out)."""
    return f"sum(r.denominator) filter (where {_counted(last)})"


# A group of rows of one period (trend and year over year group by month): every row, summed across clinics.
_KPI_VALUE = _kpi_value()


def last_year(f: Filters) -> Filters:
    """The same dates one year earlier (Feb 29 becomes Feb 28), for the 'same period last year' comparison."""

    def back(d: date) -> date:
        try:
            return d.replace(year=d.year - 1)
        except ValueError:
            return d.replace(year=d.year - 1, day=28)

    return Filters(back(f.start), back(f.end), f.clinics)


def kpi_summary(r: Reader, f: Filters) -> pd.DataFrame:
    """One row per KPI: value in the period, in the previous period and in the same period last year (each
    with its maturity), definition and healthy band."""
    ly = last_year(f)
    params = {
        **clinic_params(r, f),
        **_period_params("", f.start, f.end),
        **_previous_params(f),
        **_period_params("ly_", ly.start, ly.end),
    }
    other = """
        select r.kpi, {value} as value, sum(r.cohort) as cohort, sum(r.pending) as pending,
               any_value(r.{prefix}pick) as period_grain, {unreported} as unreported_periods,
               min(r.period_start) filter (where {kept}) as first_period, max(r.period_start) as last_period
        from rows r join marts.kpi_definitions d using (kpi)
        where {period} group by r.kpi, d.unit
    """

    def period_of(prefix: str) -> str:
        last = _last_period(prefix)
        return other.format(
            value=_kpi_value(last),
            kept=_kept(last),
            period=_in_period(prefix),
            prefix=prefix,
            unreported=_unreported(last),
        )

    last = _last_period()
    sql = (
        _kpi_base(periods=("", "prev_", "ly_"))
        + f"""
    , cur as (
        select r.kpi, {_kpi_value(last)} as value, {_kpi_denominator(last)} as denominator,
               sum(r.cohort) as cohort, sum(r.pending) as pending, any_value(r.pick) as period_grain,
               {_unreported(last)} as unreported_periods,
               min(r.period_start) filter (where {_kept(last)}) as first_period, max(r.period_start) as last_period
        from rows r join marts.kpi_definitions d using (kpi)
        where {_in_period()} group by r.kpi, d.unit
    ), prev as ({period_of("prev_")}
    ), ly as ({period_of("ly_")}
    )
    select d.kpi, d.label, d.unit, d.better, d.healthy_low, d.healthy_high, d.definition, d.maturity,
           cur.value, prev.value as previous, ly.value as last_year, cur.denominator, cur.cohort, cur.pending,
           d.denominator as denominator_definition, cur.period_grain, $grain as asked_grain,
           cur.first_period, cur.last_period, cur.unreported_periods, prev.first_period as previous_first_period,
           prev.last_period as previous_last_period, ly.first_period as last_year_first_period,
           ly.last_period as last_year_last_period,
           prev.period_grain as previous_period_grain, $prev_grain as previous_asked_grain,
           ly.period_grain as last_year_period_grain, $ly_grain as last_year_asked_grain,
           prev.unreported_periods as previous_unreported_periods,
           ly.unreported_periods as last_year_unreported_periods,
           prev.cohort as previous_cohort, prev.pending as previous_pending,
           ly.cohort as last_year_cohort, ly.pending as last_year_pending,
           {MATURITY_BAR} as maturity_bar
    from marts.kpi_definitions d
    left join cur using (kpi) left join prev using (kpi) left join ly using (kpi)
    """
    )
    df = with_maturity(r.df(sql, params))
    rank = {k: i for i, k in enumerate(KPI_ORDER)}
    return df.sort_values("kpi", key=lambda s: s.map(lambda k: rank.get(k, len(rank)))).reset_index(drop=True)


def _maturing(cohort: pd.Series, pending: pd.Series, bar: pd.Series) -> pd.Series:
    share = 1 - pd.to_numeric(pending, errors="coerce") / pd.to_numeric(cohort, errors="coerce").where(lambda c: c > 0)
    return (share < bar).fillna(False).astype(bool)


def with_maturity(df: pd.DataFrame) -> pd.DataFrame:
    """resolved_share and is_maturing from cohort/pending sums: one rule for tiles, trends and clinics.

    A cohort KPI (denial rate, early dropout, conversions...) is 'maturing' while fewer than the build's
    maturity bar (marts.build_info.maturity_resolved_share, selected as `maturity_bar`) of its cohort has an
    outcome; flow KPIs (no cohort) never are. The bar has one source, the build: a build without it marks
    nothing rather than guess a bar of its own.
    """
    cohort = pd.to_numeric(df["cohort"], errors="coerce")
    pending = pd.to_numeric(df["pending"], errors="coerce")
    bar = pd.to_numeric(df["maturity_bar"], errors="coerce")
    df = df.assign(resolved_share=(1 - pending / cohort.where(cohort > 0)).astype(float))
    df["is_maturing"] = _maturing(cohort, pending, bar)
    for prefix in ("previous", "last_year"):
        if f"{prefix}_cohort" in df:
            df[f"{prefix}_is_maturing"] = _maturing(df[f"{prefix}_cohort"], df[f"{prefix}_pending"], bar)
    return df


def kpi_trend(r: Reader, f: Filters, kpi: str, months: int = 24) -> pd.DataFrame:
    """Monthly values of one KPI up to the end of the range (whole practice or the selected clinics), with
    each month's maturity (young cohorts are greyed out by the chart)."""
    params = {**clinic_params(r, f), "kpi": kpi, "end": f.end, "from": f.end - timedelta(days=31 * months)}
    sql = f"""
    select r.period_start as month, {_KPI_VALUE} as value, sum(r.cohort) as cohort, sum(r.pending) as pending,
           {MATURITY_BAR} as maturity_bar
    from marts.practice_kpis r join marts.kpi_definitions d using (kpi)
    where r.kpi = $kpi and r.grain = 'month' and r.period_start between $from and $end and {_PRACTICE_OR_CLINICS}
    group by r.period_start, d.unit order by 1
    """
    return with_maturity(r.df(sql, params))


def kpi_by_clinic(r: Reader, f: Filters, kpi: str) -> pd.DataFrame:
    """One KPI per clinic over the period (for the clinic comparison)."""
    params = {**clinic_params(r, f), **_period_params("", f.start, f.end), "kpi": kpi}
    sql = (
        _kpi_base(_EACH_CLINIC)
        + f"""
    select r.clinic_id, coalesce(c.clinic_name, r.clinic_id) as clinic_name, {_kpi_value(_last_period())} as value,
           sum(r.cohort) as cohort, sum(r.pending) as pending, {MATURITY_BAR} as maturity_bar
    from rows r join marts.kpi_definitions d using (kpi) left join marts.dim_clinics c using (clinic_id)
    where r.kpi = $kpi and {_in_period()}
    group by r.clinic_id, c.clinic_name, d.unit order by value desc nulls last
    """
    )
    return with_maturity(r.df(sql, params))
