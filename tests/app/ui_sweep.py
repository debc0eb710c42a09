"""What a person would read on a rendered page (AppTest), and what must never be in it: `None`, `nan`, a
snake_case code from the label table, a snake_case table header, a null cell shown as "None"."""

from __future__ import annotations

import json
import re

import pandas as pd

from app.lib import labels

TEXT_KINDS = {"markdown", "caption", "title", "subheader", "header", "info", "success", "warning", "error", "toast"}
RAW = re.compile(r"\b(?:None|nan|NaN)\b")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _chart_text(spec: str) -> list[str]:
    """Titles, legend names, category values and node labels of a plotly spec (not its numbers)."""
    fig = json.loads(spec)
    out: list[str] = []
    layout = fig.get("layout", {})
    for key in ("title",):
        t = layout.get(key)
        out += _strings(t.get("text") if isinstance(t, dict) else t)
    for ann in layout.get("annotations", []):
        out += _strings(ann.get("text"))
    for axis in [k for k in layout if k.startswith(("xaxis", "yaxis"))]:
        t = layout[axis].get("title")
        out += _strings(t.get("text") if isinstance(t, dict) else t)
    for trace in fig.get("data", []):
        out += _strings(trace.get("name"))
        for key in ("x", "y", "labels"):
            out += [v for v in _strings(trace.get(key)) if not re.match(r"^\d{4}-\d{2}-\d{2}", v)]
        out += _strings((trace.get("node") or {}).get("label"))
    return out


def visible_texts(at) -> list[str]:
    """Every string a user reads on the page: text elements, metrics, widget options, table headers and
    cells, chart titles, legends and categories."""
    out: list[str] = []

    def walk(node) -> None:
        kind = getattr(node, "type", "")
        if kind in TEXT_KINDS:
            out.append(str(node.value))
        elif kind == "metric":
            out.extend([node.label, str(node.value), str(node.proto.body or "")])
        elif kind in ("selectbox", "multiselect", "radio", "button_group", "segmented_control"):
            out.extend([str(getattr(node, "label", "")), *(str(o) for o in getattr(node.proto, "options", []))])
        elif kind == "dataframe":
            out.extend(table_texts(node))
        elif kind == "plotly_chart":
            out.extend(_chart_text(node.proto.spec))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out


def table_texts(node) -> list[str]:
    df: pd.DataFrame = node.value
    config = json.loads(node.proto.columns or "{}")
    headers = [str((config.get(str(c)) or {}).get("label") or c) for c in df.columns]
    cells = [str(v) for col in df.columns if df[col].dtype == object for v in df[col].dropna().unique()]
    shown_null = (
        [] if not df.isna().any().any() or node.proto.placeholder else ["None (a null cell without placeholder)"]
    )
    return headers + cells + shown_null


def problems(at) -> list[str]:
    """None/nan, snake_case codes of the label table, snake_case headers, null cells shown as None."""
    codes = labels.snake_codes()
    found: set[str] = set()
    for text in visible_texts(at):
        found.update(m.group(0) for m in RAW.finditer(text))
        found.update(t for t in re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", text) if t in codes)
        if labels.SNAKE.match(text.strip()):
            found.add(text.strip())
    return sorted(found)
