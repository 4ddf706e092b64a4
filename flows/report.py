"""What a flow run publishes: the funnel with per-stage wall times, the run directory, the card."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any

from prefect.artifacts import create_markdown_artifact

from curate.errors import CurateError
from curate.run.directory import RunDir
from curate.run.funnel import funnel_rows, funnel_table


class _PlainCurateErrors(logging.Filter):
    """Prefect logs the exception that ended a run with its traceback; a :class:`CurateError` already
    names the file and line (``curate run`` prints it as one line), so its log record keeps the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CurateError):
            record.exc_info = None
            record.exc_text = None
        return True


def plain_curate_errors() -> None:
    """Log a run's :class:`CurateError` without a traceback (bad input is one line, never a traceback)."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _PlainCurateErrors) for f in logger.filters):
            logger.addFilter(_PlainCurateErrors())


class StageClock:
    """Wall time per named step of a flow run, in the order the steps ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def funnel_markdown(manifest: dict[str, Any], seconds: dict[str, float]) -> str:
    """The funnel (stage, in, kept, rejected by reason) with each stage's wall time in this run."""
    lines = ["| stage | in | kept | rejected | rejected by reason | seconds |", "|---|---|---|---|---|---|"]
    for row in funnel_rows(manifest):
        reasons = ", ".join(f"{k} {v:,}" for k, v in row["reasons"].items()) or "-"
        took = f"{seconds[row['stage']]:.2f}" if row["stage"] in seconds else "- (done earlier)"
        lines.append(f"| {row['stage']} | {row['in']:,} | {row['kept']:,} | {row['rejected']:,} | {reasons} | {took} |")
    staged = {row["stage"] for row in funnel_rows(manifest)}
    for name, value in seconds.items():
        if name not in staged:
            lines.append(f"| {name} | | | | | {value:.2f} |")
    return "\n".join(lines)


def publish(flow_name: str, manifest: dict[str, Any], out: str, card: str, seconds: dict[str, float]) -> str:
    """Create the run's markdown artifact (key ``<flow>-funnel``); returns its markdown."""
    records = manifest["records"]
    markdown = (
        f"# {flow_name} funnel\n\n{funnel_markdown(manifest, seconds)}\n\n"
        f"{records['in']:,} records in, {records['kept']:,} kept, {records['rejected']:,} rejected; "
        f"wall time {sum(seconds.values()):.1f} s\n\nRun directory: `{out}`\n\nDataset card: `{card}`\n"
    )
    create_markdown_artifact(
        key=f"{flow_name}-funnel", markdown=markdown, description="stage, in, kept, rejected by reason, seconds"
    )
    return markdown


def close_run(
    flow_name: str, manifest: dict[str, Any] | None, run: RunDir, out: str, clock: StageClock, card_task: Any
) -> dict[str, Any]:
    """The common end of a flow run: write the card, publish the funnel artifact, log the funnel.

    ``run`` is the writer's run directory: ``card_task(run)`` writes the card and, for a run staged
    for a URL, uploads the run with its manifest last. ``manifest`` is None when the run directory
    was already up to date (its manifest is read). Returns the flow's result: the run, its record
    counts, the card and per-stage seconds.
    """
    from prefect import get_run_logger

    if manifest is None:
        get_run_logger().info("%s is up to date; nothing to do", out)
        manifest = run.manifest()
    with clock("card"):
        card_path = card_task(run)
    publish(flow_name, manifest, out, card_path, clock.seconds)
    get_run_logger().info("funnel:\n%s", funnel_table(manifest))
    return {"run": out, **manifest["records"], "card": card_path, "seconds": clock.seconds}


def print_result(result: dict[str, Any]) -> None:
    """What ``python -m flows.NAME`` prints at the end: the funnel, the card, per-stage seconds.

    ``benchmarks/flow.py`` reads the ``stage seconds:`` line.
    """
    import json

    from curate.run.funnel import summary, warnings

    out = result["run"]
    run = RunDir(out)
    manifest = run.manifest()
    print(summary(manifest, out))
    for name, path in sorted((manifest.get("selections") or {}).items()):
        for line in warnings(RunDir(run.root / path).manifest(), name):
            print(line)
    print(f"  card: {result['card']} (figures in {out}/figures/)")
    print("stage seconds: " + json.dumps(result["seconds"]))
