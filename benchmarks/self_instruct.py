"""Benchmark: self-instruct's ROUGE-L filter and generation with the local model.

Prints progress on stderr, then one JSON object as its last stdout line:

* ``rouge_speedup_vs_rouge_score``: pairs per second of :mod:`curate.synth.rouge` (tokenizing and
  encoding included, ``workers=1``) over ``rouge_score`` on the same pairs of real Alpaca
  instructions, the baseline being Stanford Alpaca's own loop (tokens prepared once,
  ``rouge_scorer._score_lcs`` per pair). Both in one child pinned to one core, alternating
  ``--repeats`` rounds after one untimed run each, medians; ``rouge_score_full_api_pairs_per_s``
  is ``RougeScorer.score`` (tokenizing every call). Check ``rouge_scores_identical``: every score equal, bit for bit.
* ``filter_10k_vs_52k_seconds``: the nearest-pool ROUGE-L (score and neighbour) of 10,000
  candidates (Alpaca instructions with their words shuffled) against all 52,002 Alpaca
  instructions, wall time on all cores (no baseline: a plain loop would take hours), encoding
  included.
* ``accepted_per_minute_local``: tasks accepted per minute of generation with the local
  SmolLM2-135M-Instruct on this machine (``--rounds`` rounds of ``--requests`` requests with the
  local backend's sampling defaults), with the acceptance rate by reject reason
  (``rate_by_reason``) and ``minutes_for_200`` at that rate. ``--no-generate`` skips this part.

``--quick``: 60 x 60 pairs, one round, 1,000 candidates, no generation (a model load and minutes of
CPU sampling). The last line printed is one JSON object (``targets.finish``).
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

from benchmarks.common import log, machine, run_json  # noqa: E402
from benchmarks.targets import finish, target  # noqa: E402


def alpaca_instructions() -> list[str]:
    data = Path(os.environ.get("CURATE_DATA_DIR", ROOT.parent / "shared" / "data")) / "alpaca_data.json"
    return [r["instruction"] for r in json.loads(data.read_text())]


def rouge_child(side: int, repeats: int) -> None:
    """Both ROUGE-L scorers in this (pinned) process, alternating; prints medians and the check."""
    import statistics

    import numpy as np
    from rouge_score import rouge_scorer
    from rouge_score.tokenize import tokenize

    from curate.synth.rouge import TokenCodes, rouge_l_matrix

    rng = random.Random(0)
    instructions = alpaca_instructions()
    targets, pool = rng.sample(instructions, side), rng.sample(instructions, side)

    def theirs() -> np.ndarray:
        target_tokens = [tokenize(t, None) for t in targets]
        pool_tokens = [tokenize(p, None) for p in pool]
        return np.array([[rouge_scorer._score_lcs(t, p).fmeasure for p in pool_tokens] for t in target_tokens])

    def ours() -> np.ndarray:
        codes = TokenCodes()
        return rouge_l_matrix(codes.encode_texts(targets), codes.encode_texts(pool), workers=1)

    runs: dict[str, list[float]] = {"ours": [], "theirs": []}
    results = {"ours": ours(), "theirs": theirs()}  # both warmed the same way: one untimed run each
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            started = time.perf_counter()
            results[name] = fn()
            runs[name].append(time.perf_counter() - started)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    sub = targets[: max(side // 4, 1)]
    started = time.perf_counter()
    full = np.array([[scorer.score(t, p)["rougeL"].fmeasure for p in pool] for t in sub])
    full_rate = len(sub) * side / (time.perf_counter() - started)
    identical = bool(
        np.array_equal(results["ours"], results["theirs"]) and np.array_equal(results["ours"][: len(sub)], full)
    )
    summary = {name: statistics.median(times) for name, times in runs.items()}
    print(json.dumps({**summary, "full_api_pairs_per_s": full_rate, "identical": identical}))


def rouge_part(instructions: list[str], side: int, repeats: int, candidates: int) -> tuple[dict, dict]:
    from curate.synth.rouge import TokenCodes, nearest

    pairs = side * side
    done = run_json([sys.executable, __file__, "--child", "--side", str(side), "--repeats", str(repeats)], cores=1)
    log(f"{pairs:,} pairs on 1 core: rouge_score {done['theirs']:.2f} s, curate.synth.rouge {done['ours']:.4f} s")
    # Alpaca instructions with their words shuffled: real lengths and vocabulary, no exact self-match.
    rng = random.Random(1)
    shuffled = [" ".join(rng.sample(t.split(), len(t.split()))) for t in rng.sample(instructions, candidates)]
    started = time.perf_counter()
    codes = TokenCodes()
    pool_encoded = codes.encode_texts(instructions)
    scores, _ = nearest(codes.encode_texts(shuffled), pool_encoded)
    filter_s = time.perf_counter() - started
    log(
        f"{candidates:,} candidates x {len(instructions):,} pool: {filter_s:.1f} s "
        f"({int((scores >= 0.7).sum()):,} at >= 0.7)"
    )
    figures = {
        "rouge_speedup_vs_rouge_score": round(done["theirs"] / done["ours"], 1),
        "rouge_pairs": pairs,
        "rouge_pairs_per_s": round(pairs / done["ours"]),
        "rouge_score_pairs_per_s": round(pairs / done["theirs"]),
        "rouge_score_full_api_pairs_per_s": round(done["full_api_pairs_per_s"]),
        "rouge_settings": {
            "curate": "TokenCodes + rouge_l_matrix(workers=1), encoding timed",
            "rouge_score": "tokenize once, _score_lcs per pair (Stanford Alpaca's loop)",
            "cores": "both in one process pinned to 1 core",
            "rounds": repeats,
            "order": "alternating, median",
        },
        f"filter_{candidates // 1000}k_vs_52k_seconds": round(filter_s, 2),
        "filter_candidates": candidates,
        "filter_cores": machine()["cpus"],
        "filter_pairs_per_s": round(candidates * len(instructions) / filter_s),
    }
    return figures, {"rouge_scores_identical": done["identical"]}


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
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of the speed comparison")
    parser.add_argument("--requests", type=int, default=8, help="local generation: requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="local generation: rounds")
    parser.add_argument("--device", help="local generation: cpu or cuda (default: cuda when present)")
    parser.add_argument("--no-generate", action="store_true", help="skip the local generation part")
    parser.add_argument("--quick", action="store_true", help="small comparison, no generation (the CI check)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return rouge_child(args.side, args.repeats)
    side, repeats, candidates = (60, 1, 1000) if args.quick else (args.side, args.repeats, 10_000)
    figures: dict = {"benchmark": "self-instruct", "quick": args.quick, "machine": machine()}
    rouge, checks = rouge_part(alpaca_instructions(), side, repeats, candidates)
    figures.update(rouge)
    if args.no_generate or args.quick:
        figures["accepted_per_minute_local"] = None
    else:
        figures.update(generation_part(args.requests, args.rounds, args.device))
    targets = {"rouge_speedup_vs_rouge_score": target(figures["rouge_speedup_vs_rouge_score"], ">=", 100)}
    finish(figures, targets, checks)


if __name__ == "__main__":
    main()
