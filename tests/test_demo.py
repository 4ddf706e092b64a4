"""``make demo``'s driver on a small source: server, deployment run --watch, funnel, all stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flows.serve import ROOT


def test_demo_runs_the_deployment_shows_the_funnel_and_stops_everything(tmp_path: Path, data_dir: Path) -> None:
    out, home = tmp_path / "run", tmp_path / "prefect-home"
    sources = json.dumps(["alpaca-seed-tasks"])
    code = "from pathlib import Path; from flows.demo import demo; "
    code += f"raise SystemExit(demo({str(out)!r}, {sources!r}, Path({str(home)!r})))"
    before = set(os.listdir("/proc"))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "CURATE_DATA_DIR": str(data_dir)},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "| hygiene | 175 | 174 | 1 | blacklisted_keyword 1 |" in output, output[-4000:]
    assert f"dataset card: {out}/README.md" in output and (out / "README.md").exists()
    assert "stopped the Prefect server and worker" in output
    leftover = []
    for pid in set(os.listdir("/proc")) - before:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
            environ = Path(f"/proc/{pid}/environ").read_text(errors="replace")
        except OSError:
            continue
        if str(home) in environ and "prefect" in cmdline:
            leftover.append(cmdline)
    assert not leftover, leftover
