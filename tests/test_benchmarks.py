"""Every benchmark `make bench` lists runs in its quick mode, passes its checks and compares its targets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def listed() -> list[str]:
    match = re.search(r"^BENCHMARKS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile has no BENCHMARKS list"
    return match.group(1).split()


def test_make_bench_lists_every_benchmark_with_a_quick_mode() -> None:
    names = listed()
    assert {"ingest", "dedup", "embed", "self_instruct", "judge", "flow"} <= set(names)
    for name in names:
        assert "--quick" in (ROOT / "benchmarks" / f"{name}.py").read_text(), name


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the flow's quick mode starts Prefect three times: minutes on a loaded machine
@pytest.mark.parametrize("name", listed())
def test_quick_benchmark_passes_its_checks(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick", "--out", str(tmp_path), name],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["quick"] is True and result["checks"] and all(result["checks"].values())
    for key, t in result["targets"].items():
        assert set(t) == {"target", "value", "met"} and isinstance(t["met"], bool), key
    assert "machine" in result and result["machine"]["cpus"] >= 1
