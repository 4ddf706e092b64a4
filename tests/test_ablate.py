"""A whole ablation as a user runs it: arms from a run directory, two seeds, results and cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_ablation_end_to_end(tmp_path: Path) -> None:
    from curate.training.ablate import ci_source

    source = ci_source(tmp_path / "data", progress=False)
    spec = tmp_path / "ablation.yaml"
    spec.write_text(
        f"""name: tiny
budget: steps
steps: 1
seeds: [0, 1]
train: {{max_len: 32, batch_size: 2, grad_accum: 1, eval_n: 2}}
arms:
  - {{name: random-8, run: {source}, select: {{strategy: random, n: 8, seed: 0}}}}
  - {{name: longest-8, run: {source}, select: {{strategy: longest, n: random-8}}}}
"""
    )
    out = tmp_path / "abl"
    done = run_cli("ablate", str(spec), "--out", str(out), "--quiet")
    assert "| longest-8 | random-8 |" in done.stdout and "equal steps: 1 optimizer steps" in done.stdout

    entries = json.loads((out / "results.json").read_text())
    expected = [("longest-8", 0), ("longest-8", 1), ("random-8", 0), ("random-8", 1)]
    assert sorted((e["arm"], e["seed"]) for e in entries) == expected
    assert all(e["budget"] == "steps" and e["steps"] == 1 and e["examples"] == 8 for e in entries)
    summary = json.loads((out / "summary.json").read_text())
    row = {r["arm"]: r for r in summary["arms"]}["longest-8"]
    losses = [e["eval_loss"] for e in entries if e["arm"] == "longest-8"]
    assert row["eval_loss"]["mean"] == pytest.approx(sum(losses) / 2, abs=1e-6)
    assert row["eval_loss"]["low"] < row["eval_loss"]["mean"] < row["eval_loss"]["high"] or losses[0] == losses[1]
    assert summary["paired"][0]["arm"] == "longest-8" and summary["paired"][0]["control"] == "random-8"
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "95% CI" in (out / "results.md").read_text()

    card = (out / "arms" / "longest-8" / "README.md").read_text()
    assert "### Ablation `tiny` (this set is arm `longest-8`)" in card
    assert json.loads((out / "arms" / "random-8" / "ablations" / "tiny.json").read_text())["arm"] == "random-8"

    # Rerunning reuses every trained arm and gives the same summary, byte for byte.
    before = (out / "summary.json").read_bytes()
    run_cli("ablate", str(spec), "--out", str(out), "--quiet")
    assert (out / "summary.json").read_bytes() == before
    assert all(e["reused"] for e in json.loads((out / "results.json").read_text()))


def test_bad_specs_name_the_problem(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nbudget: steps\narms:\n  - {name: a, run: nowhere}\n")
    done = run_cli("ablate", str(spec), check=False)
    assert done.returncode == 2 and "budget: steps needs steps" in done.stderr
    spec.write_text("name: x\narms:\n  - {name: a, run: nowhere}\n")
    done = run_cli("ablate", str(spec), "--out", str(tmp_path / "o"), check=False)
    assert done.returncode == 2 and "nowhere is not a run directory" in done.stderr


def test_ablate_flow_and_deployment() -> None:
    import yaml

    from flows.ablate import ablate
    from tests.conftest import ROOT

    assert ablate.name == "ablate"
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    entry = next(d for d in deployments if d["name"] == "ablate")
    assert entry["entrypoint"] == "flows/ablate.py:ablate"
