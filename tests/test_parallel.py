"""Worker pools from a user's script: spawned workers must not re-run an unguarded script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
from curate.run.parallel import map_distinct
print("top-level ran", flush=True)
texts = [f"text {i % 15000}" for i in range(30000)]
lengths = map_distinct(len, texts, workers=2, min_parallel=1000, chunk_size=1000)
assert lengths == [len(t) for t in texts]
print("done", flush=True)
"""


def test_an_unguarded_script_runs_once_and_uses_the_pool(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["top-level ran", "done"]
    assert "process pool failed" not in done.stderr
