"""Benchmark: the LLM judge's cost per record against the local OpenAI-compatible server.

Starts ``curate serve-lm`` (SmolLM2-135M-Instruct on this machine) unless ``--base-url`` names a
running endpoint, judges the first ``--records`` Alpaca records with the project's prompt and a
fresh reply cache (every call real), and prints one JSON object as its last line:
``judge_seconds_per_record``, ``records``, ``prompt_tokens``, ``completion_tokens``, ``parsed``.
``benchmarks/quality.py`` imports :func:`judge_seconds_per_record`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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
    return {
        "judge_seconds_per_record": round(seconds / max(records, 1), 3),
        "records": records,
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
    args = parser.parse_args()
    print(json.dumps(judge_seconds_per_record(args.records, args.base_url, args.model, args.max_tokens)))


if __name__ == "__main__":
    main()
