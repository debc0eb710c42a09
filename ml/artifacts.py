"""Model artifacts on disk: where each model, model card and summary lives under $PTPULSE_HOME/models, atomic
writes of them, and the generator's truth/ folder the model cards compare against.

Truth for the model card (`oracle_roc_auc`, channel rank correlation): the generator writes `truth/` beside
its exports. Pass `truth_dir=` to `ml.train_score.train`, or set `PTPULSE_TRUTH_DIR` to that folder; without
either, the oracle figures are null (a real practice has no truth). The warehouse side (reading marts,
writing schema `ml`) is ml/warehouse.py.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from ptpulse.core.config import Settings

TRUTH_ENV = "PTPULSE_TRUTH_DIR"


def no_show_dir(settings: Settings) -> Path:
    return settings.models_dir / "no_show"


def model_path(settings: Settings) -> Path:
    return no_show_dir(settings) / "model.joblib"


def card_path(settings: Settings) -> Path:
    return no_show_dir(settings) / "model_card.json"


def lead_dir(settings: Settings) -> Path:
    return settings.models_dir / "lead"


def lead_model_path(settings: Settings) -> Path:
    return lead_dir(settings) / "model.joblib"


def lead_card_path(settings: Settings) -> Path:
    return lead_dir(settings) / "model_card.json"


def denial_dir(settings: Settings) -> Path:
    return settings.models_dir / "denial"


def denial_model_path(settings: Settings) -> Path:
    return denial_dir(settings) / "model.joblib"


def denial_card_path(settings: Settings) -> Path:
    return denial_dir(settings) / "model_card.json"


def backtest_path(settings: Settings) -> Path:
    return settings.models_dir / "demand" / "backtest.json"


def attribution_path(settings: Settings) -> Path:
    return settings.models_dir / "attribution" / "summary.json"


def status_path(settings: Settings) -> Path:
    """Per build: which model produced output and, for each that did not, the reason (ml/sufficiency.py)."""
    return settings.models_dir / "status.json"


def truth_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The generator's truth/ folder if given (argument, else $PTPULSE_TRUTH_DIR) and present."""
    raw = explicit if explicit is not None else os.environ.get(TRUTH_ENV)
    if not raw:
        return None
    path = Path(raw).expanduser()
    if path.is_dir() and not (path / "appointment_truth.csv").exists() and (path / "truth").is_dir():
        path = path / "truth"  # the export folder was given instead of its truth/ subfolder
    return path if path.is_dir() else None


def read_truth(folder: Path | None, name: str, columns: tuple[str, ...] | None = None) -> pd.DataFrame | None:
    """A truth file, or only `columns` of it (the appointment truth also holds the draw's parts for the bench)."""
    if folder is None or not (folder / name).exists():
        return None
    return pd.read_csv(folder / name, usecols=list(columns) if columns else None)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a model card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_model(path: Path, model: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    joblib.dump(model, tmp)
    os.replace(tmp, path)


def load_model(path: Path) -> Any | None:
    """The saved model, or None when missing or unreadable (e.g. written by another library version)."""
    if not path.exists():
        return None
    try:
        return joblib.load(path)
    except Exception:  # noqa: BLE001 - an unreadable artifact means "retrain", whatever the cause
        return None


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def code_fingerprint(*files: Path) -> str:
    """A hash of what the code does: each file's syntax tree without comments, docstrings or layout. Served demand
    fits and denial scores are keyed by it, so a comment or docstring edit keeps them (hashing the bytes refitted
    all 2,700 demand series of a 900-clinic chain, ~4 min, for a docstring) while any statement change does not."""
    h = hashlib.sha256()
    for f in sorted(files):
        tree = ast.parse(Path(f).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(body, list)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        h.update(Path(f).name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()
