"""Targets that are compared, not written down: every benchmark ends through :func:`finish`.

A target is ``(value, op, bound)``; :func:`finish` prints the figures as one JSON object (the
last line of the output) with a ``targets`` object ``{"name": {"target", "value", "met"}}`` and
exits non-zero when a correctness check failed. A missed *speed* target is reported, not fatal:
it is a measurement, and the note says it was missed.
"""

from __future__ import annotations

import json
import operator
import sys
from typing import Any

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def target(value: Any, op: str, bound: Any) -> dict[str, Any]:
    """One target: ``value op bound``; ``met`` is False when the value is missing."""
    met = value is not None and bool(OPS[op](value, bound))
    return {"target": f"{op} {bound}", "value": value, "met": met}


def finish(figures: dict[str, Any], targets: dict[str, dict[str, Any]], checks: dict[str, bool]) -> None:
    """Print ``figures`` with ``targets`` and ``checks`` as the last line; exit 1 if a check failed."""
    failed = sorted(name for name, ok in checks.items() if not ok)
    out = {**figures, "checks": checks, "targets": targets}
    print(json.dumps(out, default=str))
    if failed:
        print(f"correctness check failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
