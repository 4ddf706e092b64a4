"""Benchmark: the LLM judge's cost per record against the local OpenAI-compatible server.

Starts ``curate serve-lm`` (SmolLM2-135M-Instruct on this machine) unless ``--base-url`` names a
running endpoint, judges the first ``--records`` Alpaca records with the project's prompt and a
fresh reply cache (every call real), and prints one JSON object as its last line (through
``targets.finish``): ``judge_seconds_per_record`` is the wall time over the records that got a
parsed score (failed or unparsable replies cost time but are not judged records; None when none
parsed), ``judge_seconds_per_request`` the wall time over every request, with ``parsed``,
``unparsable``, ``errors`` and the token counts. Checks: every record got an annotation row, and
every parsed score lies in 0..5. ``benchmarks/quality.py`` imports :func:`judge_seconds_per_record`.
``--quick``: 1 record, 16 tokens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from benchmarks.targets import finish  # noqa: E402


def judge_seconds_per_record(
    records: int = 5, base_url: str | None = None, model: str = "smollm2", max_tokens: int = 64, concurrency: int = 1
) -> dict:
    """Seconds of wall time per judged record (fresh cache), with the token counts."""
    import polars as pl

    from curate.io.ingest import Ingest
    from curate.llm.chat import ChatClient, ChatSettings
    from curate.llm.server import ServerProcess
    from scorers.judge import JudgeSampling, judge_records, load_prompt

    frame = pl.concat([b[0] for b in Ingest(["alpaca"]).batches()]).head(records)
    server = None if base_url else ServerProcess().start()
    try:
        url = base_url or server.base_url
        with tempfile.TemporaryDirectory() as cache:
            settings = ChatSettings(url, model, concurrency=concurrency, cache_dir=cache)
            with ChatClient(settings) as client:
                started = time.perf_counter()
                result = judge_records(frame, client, load_prompt("curate"), JudgeSampling(max_tokens=max_tokens))
                seconds = time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
    stats = result.stats
    scores = result.annotations["judge_score"].drop_nulls().to_list()
    return {
        "judge_seconds_per_record": round(seconds / stats["parsed"], 3) if stats["parsed"] else None,
        "judge_seconds_per_request": round(seconds / max(records, 1), 3),
        "records": records,
        "unparsable": stats["unparsable"],
        "errors": stats["errors"],
        "annotated_rows": result.annotations.height,
        "scores_in_range": all(0 <= x <= 5 for x in scores),
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "prompt_tokens": stats["prompt_tokens"],
        "completion_tokens": stats["completion_tokens"],
        "parsed": stats["parsed"],
        "endpoint": "local serve-lm (SmolLM2-135M-Instruct)" if base_url is None else base_url,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5)
    parser.add_argument("--base-url")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1 record, 16 tokens (the CI check)")
    args = parser.parse_args()
    records, max_tokens = (1, 16) if args.quick else (args.records, args.max_tokens)
    figures = judge_seconds_per_record(records, args.base_url, args.model, max_tokens)
    checks = {
        "every_record_annotated": figures.pop("annotated_rows") == records,
        "scores_in_range": figures.pop("scores_in_range"),
    }
    finish({"benchmark": "llm judge", "quick": args.quick, "machine": machine(), **figures}, {}, checks)


if __name__ == "__main__":
    main()
