"""A practice too thin to train is not retrained by every build, and a long history does not backtest a century.

The hand-built tiny practice (tests/dbt/tiny_practice, tests/tiny_variant.py) has a dozen appointments: every
classifier is "not enough data". Its first build decides that and records the decision with a fingerprint of the
training data; an unchanged rebuild keeps the decision (no model is fitted, no backtest runs) and still says why
scores are withheld; a build after new data lands decides again; `ptpulse train` (ml.train_score.train) always does.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.loader import ingest
from ml import demand, sufficiency
from ml import train_score as ts
from ptpulse.core.config import get_settings
from tests.tiny_variant import TINY

# one more follow-up visit booked for the last evaluated patient: new data (a new appointment, a later as_of)
NEW_BOOKING = "SE048,A19,E11,R11,P11,CL001,T1,booked,2025-04-01 09:00:00,2025-04-03 09:00:00,45,follow_up,,,fd1"


@pytest.fixture
def counted(monkeypatch) -> Counter:
    """Count calls of the training entry points `score` reaches (the same names on the old and the new code)."""
    calls: Counter = Counter()
    for name in ("train_no_show", "train_lead", "train_denial", "demand_backtest"):
        real = getattr(ts, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(ts, name, wrapper)
    return calls


def _build(settings) -> None:
    from ptpulse.refresh import run_build

    result = run_build(settings)
    assert result.ok, result.message


def _status(settings) -> dict:
    return json.loads((settings.models_dir / "status.json").read_text())


def _card(settings) -> dict:
    return json.loads((settings.models_dir / "no_show" / "model_card.json").read_text())


def test_thin_practice_is_not_retrained_until_new_data(tmp_path: Path, counted: Counter) -> None:
    src = tmp_path / "csv"
    shutil.copytree(TINY, src)
    settings = get_settings(tmp_path / "home").ensure()
    assert all(r.status == "loaded" for r in ingest([src], settings))

    _build(settings)
    assert counted == {"train_no_show": 1, "train_lead": 1, "train_denial": 1, "demand_backtest": 1}
    first = _card(settings)
    assert first["status"] == sufficiency.NOT_TRAINED and first["reason"]
    assert not (settings.models_dir / "no_show" / "model.joblib").exists()

    # the same data built again (an incremental rebuild, a nightly with nothing new): nothing is fitted
    _build(settings)
    assert counted == {"train_no_show": 1, "train_lead": 1, "train_denial": 1, "demand_backtest": 1}
    assert _card(settings) == first  # the decision kept, its timestamp and fingerprint unchanged
    assert first["decided_on"]["feature_version"] and first["decided_on"]["rows"]["appointments"] > 0
    status = _status(settings)
    assert status["training"]["no_show"]["ran"] is False
    assert status["training"]["no_show"]["decided_at"] == first["trained_at"]
    assert "unchanged" in status["training"]["no_show"]["why_not_retrained"]
    # the page still says why there are no scores
    assert status["models"]["no_show"] == {"status": sufficiency.NOT_TRAINED, "reason": first["reason"]}
    assert status["models"]["lead"]["status"] == sufficiency.NOT_TRAINED and status["models"]["lead"]["reason"]
    assert status["models"]["denial"]["status"] == sufficiency.NOT_TRAINED
    assert status["models"]["demand_backtest"]["reason"]  # not backtested: too few weeks, said again

    # new data lands: the next build decides again
    more = tmp_path / "more"
    more.mkdir()
    header = (src / "scheduling_events.csv").read_text().splitlines()[0]
    (more / "scheduling_events.csv").write_text(header + "\n" + NEW_BOOKING + "\n")
    assert all(r.status == "loaded" for r in ingest([more], settings))
    _build(settings)
    assert counted == {"train_no_show": 2, "train_lead": 2, "train_denial": 2, "demand_backtest": 2}
    again = _card(settings)
    assert again["decided_on"] != first["decided_on"]
    assert again["decided_on"]["rows"]["appointments"] == first["decided_on"]["rows"]["appointments"] + 1
    assert _status(settings)["training"]["no_show"]["ran"] is True

    # a new model version decides again too
    decided = dict(counted)
    card = again | {"decided_on": again["decided_on"] | {"feature_version": -1}}
    (settings.models_dir / "no_show" / "model_card.json").write_text(json.dumps(card))
    _build(settings)
    assert counted["train_no_show"] == decided["train_no_show"] + 1


def _long_series(start: str = "1928-01-02", end: str = "2023-06-26") -> pd.DataFrame:
    weeks = pd.date_range(start, end, freq="7D")
    rng = np.random.default_rng(0)
    y = np.where(weeks >= pd.Timestamp("2019-01-07"), rng.poisson(20, len(weeks)), 0).astype(float)
    y[0] = 1  # one stray record in 1928: the series starts there, zero-filled to the present
    return pd.DataFrame({"series": demand.ALL, "metric": "visits", "week_start": weeks, "y": y})


def test_long_history_backtest_is_capped_and_reports_each_origin() -> None:
    cfg = demand.DemandSettings()
    series = _long_series()
    assert len(series) > 4000  # a century of weeks
    seen: list[int] = []

    def flat(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: demand.DemandSettings) -> pd.DataFrame:
        seen.append(len(history))
        level = float(history["y"].tail(4).mean())
        weeks = pd.DatetimeIndex(history["week_start"]).append(future)
        return pd.DataFrame({"week_start": weeks, "yhat": level, "yhat_lower": level - 1, "yhat_upper": level + 1})

    points, summary = demand.backtest(series, cfg, forecaster=flat)
    n = cfg.cutoffs + cfg.calibration_cutoffs
    assert len(seen) == n and max(seen) <= 5 * 52  # each origin fits the last five years, not a century
    assert summary["train_weeks"].max() <= 5 * 52
    assert cfg.history_weeks == 5 * 52

    seen.clear()
    ticks: list[tuple[str, str, int, int]] = []
    demand.backtest(series, cfg, forecaster=flat, progress=lambda *a: ticks.append(a))
    assert [t[2] for t in ticks] == list(range(1, n + 1)) and {t[3] for t in ticks} == {n}
    assert ticks[0][:2] == (demand.ALL, "visits")

    seen.clear()
    out = demand.forecast_all(series, cfg, forecaster=flat)
    assert seen == [cfg.history_weeks]
    assert out["week_start"].min() > pd.Timestamp("2017-01-01")  # the production forecast fits the same window


def test_a_comment_or_docstring_edit_keeps_the_code_fingerprint_a_statement_edit_changes_it(tmp_path):
    """Served demand fits and denial scores are keyed by the ml code: a docstring edit of ml/demand.py refitted all
    2,700 series of a 900-clinic chain (~4 min). Only a change of what the code does may."""
    from ml.artifacts import code_fingerprint

    code = tmp_path / "model.py"
    code.write_text('"""Module."""\n\n\ndef f(x):\n    """Doubles."""\n    return 2 * x  # why\n')
    before = code_fingerprint(code)
    code.write_text('"""Module, reworded."""\n\n\ndef f(x):\n    """Doubles x."""\n\n    return 2 * x  # because\n')
    assert code_fingerprint(code) == before
    code.write_text('"""Module."""\n\n\ndef f(x):\n    """Doubles."""\n    return 3 * x\n')
    assert code_fingerprint(code) != before
    code.write_text(
        '"""Module."""\n\n\ndef f(x):\n    """Doubles."""\n    return "2 * x"\n'
    )  # a string, not a docstring
    assert code_fingerprint(code) != before
    assert code_fingerprint(Path(demand.__file__)) == demand._CODE_SHA
