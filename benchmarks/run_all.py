"""Run benchmarks one after another and print every target and check: what ``make bench`` runs.

``python benchmarks/run_all.py --quick ingest dedup`` runs ``benchmarks/ingest.py --quick`` and
``benchmarks/dedup.py --quick``, each in its own process, and prints one line per target
(value, bound, met) and per check. It exits non-zero when a benchmark failed or a correctness
check failed; a missed speed target is reported, not fatal (it is a measurement of this machine).
The JSON object each benchmark printed last is saved to ``--out`` (default ``runs/bench/``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import child_env  # noqa: E402


def run(name: str, quick: bool, out: Path) -> bool:
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *(["--quick"] if quick else [])]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), cwd=ROOT)
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        print(f"{name}: failed ({done.returncode}) in {seconds:.0f} s\n{done.stderr[-3000:]}")
        return False
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: exit {done.returncode} in {seconds:.0f} s (load {result.get('machine', {}).get('load_average')})")
    for key, t in result.get("targets", {}).items():
        print(f"  target {key}: {t['value']} (target {t['target']}) {'met' if t['met'] else 'MISSED'}")
    for key, ok in result.get("checks", {}).items():
        print(f"  check {key}: {'ok' if ok else 'FAILED'}")
    if done.returncode != 0:
        print(done.stderr[-3000:])
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="benchmark names (files in benchmarks/)")
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick mode")
    parser.add_argument("--out", default="runs/bench", help="folder for each benchmark's JSON")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = [name for name in args.names if not run(name, args.quick, out)]
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
