"""X12 as other systems write it: a clearinghouse wraps the file at a fixed width (line breaks anywhere, even
inside the ISA), a claim's submission time carries decimal seconds, an old system ends the file with a DOS
end-of-file mark. Every such file reads to exactly the rows of the plain file, or is refused whole; a line
break inside a segment never lands in a value or drops a segment."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.interop import read_interop
from ingestion.interop.x12 import x12_timestamp
from ptpulse.core.contracts import load_contracts

CORPUS = Path("/work/shared/interop/x12")
REAL = [
    CORPUS / "835_005010X221A1" / "cob-contractural-adjustment.835",
    CORPUS / "835_005010X221A1" / "managed-care.835",
    CORPUS / "837_005010X222A2" / "demo.cob.example4.837",
]


def _rows(path: Path) -> dict[str, list[dict]]:
    batch = read_interop(path, load_contracts())
    return {source: [row for _, row in rows] for source, rows in batch.rows.items()}


def _single_line(text: str) -> str:
    """The file as one line: segment terminators only (how the wrapped variants are cut from it)."""
    return "".join(line.strip("\r\n") for line in text.splitlines())


@pytest.mark.parametrize("width", [60, 64, 76, 80, 100, 132])
@pytest.mark.parametrize("real", REAL, ids=lambda p: p.name)
def test_a_file_wrapped_at_a_fixed_width_reads_as_the_plain_file(tmp_path, real, width):
    if not real.exists():
        pytest.skip(f"interop corpus not found at {real}")
    plain = tmp_path / f"plain{real.suffix}"
    plain.write_text(_single_line(real.read_text()))
    text = plain.read_text()
    wrapped = tmp_path / f"wrapped{real.suffix}"
    wrapped.write_text("\r\n".join(text[i : i + width] for i in range(0, len(text), width)) + "\r\n")
    expected = _rows(plain)
    assert sum(len(r) for r in expected.values()) > 0
    assert _rows(wrapped) == expected


def test_decimal_seconds_in_a_time_keep_the_time():
    assert x12_timestamp("20250102", "1433") == "2025-01-02 14:33:00"
    assert x12_timestamp("20250102", "143305") == "2025-01-02 14:33:05"
    assert x12_timestamp("20250102", "1433057") == "2025-01-02 14:33:05"
    assert x12_timestamp("20250102", "14330512") == "2025-01-02 14:33:05"


def test_a_dos_end_of_file_mark_after_the_last_interchange_is_not_garbage(tmp_path):
    real = REAL[0]
    if not real.exists():
        pytest.skip(f"interop corpus not found at {real}")
    marked = tmp_path / "remit.835"
    marked.write_bytes(real.read_bytes().rstrip() + b"\r\n\x1a")
    assert _rows(marked) == _rows(real)
