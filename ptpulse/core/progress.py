"""Progress reporting shared by long-running commands.

Library code takes an optional `progress(step, done, total)` callback and never imports rich; the CLI
passes one that draws a rich progress bar (ptpulse/cli.py), tests pass None.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, float, float], None] | None
