"""Revenue leakage: dollars at stake by cause and month (app/lib/leakage.py turns them into a low-high range)."""

from __future__ import annotations

import pandas as pd

from app.lib.queries.base import CLINIC_FILTER, Filters, Reader, clinic_params, range_params


def revenue_leakage(r: Reader, f: Filters) -> pd.DataFrame:
    """Dollars at stake by category and month in range (selected clinics); app/lib/leakage.py makes the range."""
    sql = f"""
    select category, month, sum(events) as events, sum(units_at_stake) as units_at_stake,
           sum(dollars_at_stake) as dollars_at_stake, any_value(assumption) as assumption
    from marts.revenue_leakage
    where month between date_trunc('month', $start::date) and $end and {CLINIC_FILTER}
    group by all order by month, category
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})
