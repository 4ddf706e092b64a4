"""Benchmark: self-instruct's ROUGE-L filter and generation with the local model.

Prints progress on stderr, then one JSON object as its last stdout line:

* ``rouge_speedup_vs_rouge_score``: pairs per second of :mod:`curate.synth.rouge` (tokenizing and
  encoding included) over ``rouge_score`` on the same pairs of real Alpaca instructions, the
  baseline being Stanford Alpaca's own loop (tokens prepared once, ``rouge_scorer._score_lcs`` per
  pair); ``rouge_score_full_api_pairs_per_s`` is ``RougeScorer.score`` (tokenizing every call).
* ``rouge_scores_identical``: every score of the two equal, bit for bit.
* ``filter_10k_vs_52k_seconds``: the nearest-pool ROUGE-L (score and neighbour) of 10,000
  candidates (Alpaca instructions with their words shuffled) against all 52,002 Alpaca
  instructions, wall time on all cores, encoding included.
* ``accepted_per_minute_local``: tasks accepted per minute of generation with the local
  SmolLM2-135M-Instruct on this machine (``--rounds`` rounds of ``--requests`` requests with the
  local backend's sampling defaults), with the acceptance rate by reject reason
  (``rate_by_reason``) and ``minutes_for_200`` at that rate. ``--no-generate`` skips this part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def alpaca_instructions() -> list[str]:
    data = Path(os.environ.get("CURATE_DATA_DIR", ROOT.parent / "shared" / "data")) / "alpaca_data.json"
    return [r["instruction"] for r in json.loads(data.read_text())]


def rouge_part(instructions: list[str], side: int) -> dict:
    import numpy as np
    from rouge_score import rouge_scorer
    from rouge_score.tokenize import tokenize

    from curate.synth.rouge import TokenCodes, nearest, rouge_l_matrix

    rng = random.Random(0)
    targets, pool = rng.sample(instructions, side), rng.sample(instructions, side)
    pairs = side * side
    started = time.perf_counter()
    target_tokens = [tokenize(t, None) for t in targets]
    pool_tokens = [tokenize(p, None) for p in pool]
    baseline = np.array([[rouge_scorer._score_lcs(t, p).fmeasure for p in pool_tokens] for t in target_tokens])
    baseline_s = time.perf_counter() - started
    log(f"rouge_score (_score_lcs, Alpaca's loop): {pairs:,} pairs in {baseline_s:.2f} s")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    sub = targets[: max(side // 4, 1)]
    started = time.perf_counter()
    full = np.array([[scorer.score(t, p)["rougeL"].fmeasure for p in pool] for t in sub])
    full_api_rate = len(sub) * side / (time.perf_counter() - started)
    best = float("inf")
    ours = None
    for _ in range(3):
        started = time.perf_counter()
        codes = TokenCodes()
        ours = rouge_l_matrix(codes.encode_texts(targets), codes.encode_texts(pool))
        best = min(best, time.perf_counter() - started)
    log(f"curate.synth.rouge: {pairs:,} pairs in {best:.4f} s")
    identical = bool(np.array_equal(ours, baseline) and np.array_equal(ours[: len(sub)], full))

    # Alpaca instructions with their words shuffled: real lengths and vocabulary, no exact self-match.
    candidates = [" ".join(rng.sample(t.split(), len(t.split()))) for t in rng.sample(instructions, 10_000)]
    started = time.perf_counter()
    codes = TokenCodes()
    pool_encoded = codes.encode_texts(instructions)
    scores, _ = nearest(codes.encode_texts(candidates), pool_encoded)
    filter_s = time.perf_counter() - started
    log(f"10,000 candidates x {len(instructions):,} pool: {filter_s:.1f} s ({int((scores >= 0.7).sum()):,} at >= 0.7)")
    return {
        "rouge_speedup_vs_rouge_score": round((pairs / best) / (pairs / baseline_s), 1),
        "rouge_scores_identical": identical,
        "filter_10k_vs_52k_seconds": round(filter_s, 2),
        "rouge_pairs": pairs,
        "rouge_pairs_per_s": round(pairs / best),
        "rouge_score_pairs_per_s": round(pairs / baseline_s),
        "rouge_score_full_api_pairs_per_s": round(full_api_rate),
        "filter_pairs_per_s": round(10_000 * len(instructions) / filter_s),
    }


def generation_part(requests: int, rounds: int, device: str | None) -> dict:
    from curate.synth.self_instruct import LocalGenerator, SelfInstructConfig, grow, sampling_for

    sampling = sampling_for("local")
    config = SelfInstructConfig(
        n=10_000, requests_per_round=requests, max_rounds=rounds, embedding_threshold=None, **sampling
    )
    with tempfile.TemporaryDirectory() as tmp:
        generator = LocalGenerator(device=device, cache_dir=Path(tmp) / "cache")
        _, stats = grow("alpaca-seed-tasks", generator, config, Path(tmp) / "run", "local", progress=False)
    minutes = stats["seconds"] / 60
    log(f"local generation: {stats['accepted']} accepted of {stats['candidates']} in {stats['seconds']:.0f} s")
    rate = stats["accepted"] / minutes if minutes else None
    return {
        "accepted_per_minute_local": round(rate, 3) if rate else None,
        "minutes_for_200": round(200 / rate, 1) if rate else None,
        "local_requests_per_round": requests,
        "local_rounds": stats["rounds"],
        "local_sampling": sampling,
        "local_seconds": stats["seconds"],
        "local_candidates": stats["candidates"],
        "local_accepted": stats["accepted"],
        "acceptance_rate": stats["acceptance_rate"],
        "rate_by_reason": stats["rate_by_reason"],
        "local_completion_tokens": stats["completion_tokens"],
        "local_device": stats["generator"].get("device"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=300, help="targets and pool size of the speed comparison")
    parser.add_argument("--requests", type=int, default=8, help="local generation: requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="local generation: rounds")
    parser.add_argument("--device", help="local generation: cpu or cuda (default: cuda when present)")
    parser.add_argument("--no-generate", action="store_true", help="skip the local generation part")
    args = parser.parse_args()
    result = rouge_part(alpaca_instructions(), args.side)
    if args.no_generate:
        result["accepted_per_minute_local"] = None
    else:
        result.update(generation_part(args.requests, args.rounds, args.device))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
