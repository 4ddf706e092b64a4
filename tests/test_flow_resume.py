"""A curate-alpaca flow run killed part-way (SIGKILL) resumes after its last finished stage
and ends with the same bytes as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def filters_only(tmp_path: Path) -> Path:
    """The default recipe without scoring and selection: the checkpoints, not the embedder, are under test
    (tests/test_flow.py runs the quality and selection stages)."""
    import yaml

    recipe = yaml.safe_load((ROOT / "curate" / "recipes" / "curate-alpaca.yaml").read_text())
    for key in ("score", "select", "selections"):
        recipe.pop(key, None)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def alpaca_slice(tmp_path: Path, data_dir: Path, n: int = 6000) -> Path:
    """The first ``n`` Alpaca records as a file of their own: long enough a run to kill mid-way."""
    path = tmp_path / "alpaca-slice.json"
    path.write_text(json.dumps(json.loads((data_dir / "alpaca_data.json").read_text())[:n]))
    return path


def flow(source: Path, out: Path, data_dir: Path, home: Path, recipe: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "CURATE_DATA_DIR": str(data_dir),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flows.curate_alpaca", str(source), "--out", str(out), "--recipe", str(recipe)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_flow_resumes_and_matches_an_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    recipe = filters_only(tmp_path)
    source = alpaca_slice(tmp_path, data_dir)
    home = tmp_path / "prefect"
    reference = tmp_path / "reference"
    done = flow(source, reference, data_dir, home, recipe)
    assert done.wait(timeout=600) == 0, done.stdout.read()[-3000:]

    out = tmp_path / "killed"
    proc = flow(source, out, data_dir, home, recipe)
    state = out / ".checkpoints" / "state.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if state.exists() and json.loads(state.read_text())["step"] >= 3:  # ingest, exact and near dedup done
            break
        assert proc.poll() is None, "the flow ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the kill came too late to test anything"

    resumed = flow(source, out, data_dir, home, recipe)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert "resuming" in output and "stage(s) already done" in output
    first = json.loads((reference / "manifest.json").read_text())
    second = json.loads((out / "manifest.json").read_text())
    assert second["outputs"]["data"] == first["outputs"]["data"]
    assert [s["kept"] for s in second["stages"]] == [s["kept"] for s in first["stages"]]
    assert not (out / ".checkpoints").exists()
