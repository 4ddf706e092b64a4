"""What every benchmark shares: progress on stderr, child processes, alternating rounds, the machine.

Both sides of a comparison run in the same way: each in a fresh child process (so neither warms
the other and peak RSS is its own), alternating ``ours, theirs, ours, theirs, ...``, and the
median of the rounds is reported. ``machine()`` is stated in every benchmark's JSON, with the
load average, because the figures mean little without it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: this checkout first on the path, plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_json(command: Sequence[str], env: dict[str, str] | None = None, cores: int | None = None) -> dict[str, Any]:
    """Run a child that prints one JSON object last; ``cores`` pins it to the first N CPUs."""
    if cores is not None:
        command = ["taskset", "-c", f"0-{cores - 1}", *command]
    done = subprocess.run(list(command), capture_output=True, text=True, env=env or child_env(), cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_timed(command: Sequence[str], env: dict[str, str] | None = None, cores: int | None = None) -> float:
    """Wall seconds of a command that must succeed; ``cores`` pins it to the first N CPUs."""
    import time

    if cores is not None:
        command = ["taskset", "-c", f"0-{cores - 1}", *command]
    start = time.perf_counter()
    done = subprocess.run(list(command), capture_output=True, text=True, env=env or child_env(), cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return seconds


def alternate(sides: dict[str, Callable[[], dict[str, Any]]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Each side once per round, in turn; every run's result, per side."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            results[name].append(run())
    return results


def median(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def perturb_words(words: list[str], kind: str, rate: float, rng: Any, vocab: list[str]) -> None:
    """Edit about ``rate`` of ``words`` in place (at least one edit): ``swap`` two words, ``delete``
    one (texts over 6 words), ``insert`` a word of ``vocab``, or otherwise substitute one. The
    planted near-copies of the dedup benchmarks, so both make copies the same way."""
    for _ in range(max(1, round(rate * len(words)))):
        at = rng.randrange(len(words))
        if kind == "swap" and len(words) > 1:
            other = rng.randrange(len(words))
            words[at], words[other] = words[other], words[at]
        elif kind == "delete" and len(words) > 6:
            del words[at]
        elif kind == "insert":
            words.insert(at, rng.choice(vocab))
        else:
            words[at] = rng.choice(vocab)
