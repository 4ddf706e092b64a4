"""A whole ablation as a user runs it: arms from a run directory, two seeds, results and cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.errors import CurateError
from tests.conftest import run_cli


@pytest.mark.timeout(1800)
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
ifeval: {{prompts: 2, max_new_tokens: 4, batch_size: 2}}
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

    # IFEval ran on every adapter: accuracies per entry, a paired verdict per metric, answers on disk.
    assert all(e["ifeval_prompts"] == 2 and 0 <= e["ifeval_prompt_strict"] <= 100 for e in entries)
    assert summary["metrics"] == [
        "eval_loss",
        "ifeval_prompt_strict",
        "ifeval_prompt_loose",
        "ifeval_inst_strict",
        "ifeval_inst_loose",
    ]
    strict = next(p for p in summary["paired"] if p["metric"] == "ifeval_prompt_strict")
    assert strict["verdict"].startswith("longest-8 − random-8: ") and "IFEval prompt-strict" in strict["verdict"]
    assert strict["verdict"].endswith(("better", "not distinguishable", "worse"))
    assert "not run" in summary["metrics_run"]["pairwise"] and "IFEval on 2 prompts" in summary["metrics_run"]["ifeval"]
    for e in entries:
        answers = (Path(e["train_dir"]) / "generations.jsonl").read_text().splitlines()
        assert len(answers) == 2 and (Path(e["train_dir"]) / "ifeval.json").is_file()
    assert "| IFEval prompt-strict % | " in done.stdout and "metric pairwise: not run" in done.stdout

    card = (out / "arms" / "longest-8" / "README.md").read_text()
    assert "### Ablation `tiny` (this set is arm `longest-8`)" in card
    assert json.loads((out / "arms" / "random-8" / "ablations" / "tiny.json").read_text())["arm"] == "random-8"

    # Rerunning reuses every trained arm and gives the same summary, byte for byte.
    before = (out / "summary.json").read_bytes()
    answers = {e["train_dir"]: (Path(e["train_dir"]) / "generations.jsonl").read_bytes() for e in entries}
    run_cli("ablate", str(spec), "--out", str(out), "--quiet")
    assert (out / "summary.json").read_bytes() == before
    assert all(e["reused"] for e in json.loads((out / "results.json").read_text()))
    assert all((Path(t) / "generations.jsonl").read_bytes() == a for t, a in answers.items())


def test_sampled_arms_train_each_seed_on_its_own_draw(tmp_path: Path) -> None:
    import polars as pl

    from curate.run.directory import RunDir
    from curate.training.ablate import ci_source

    source = ci_source(tmp_path / "data", progress=False)
    spec = tmp_path / "ablation.yaml"
    arms = """arms:
  - {{name: random-64, run: {source}, select: {{strategy: random, n: 64, seed: 0}}, sample: {n}}}
  - {{name: longest-64, run: {source}, select: {{strategy: longest, n: random-64}}, sample: {n}}}
"""
    head = "name: sampled\nbudget: steps\nsteps: 1\nseeds: [0, 1]\ntrain: {max_len: 32, batch_size: 2, eval_n: 2}\n"
    spec.write_text(head + arms.format(source=source, n=8))
    out = tmp_path / "abl"
    done = run_cli("ablate", str(spec), "--out", str(out), "--quiet")
    assert "| longest-64 | 64 (a random 8 per seed) | 2 |" in done.stdout

    entries = json.loads((out / "results.json").read_text())
    assert all(e["examples"] == 8 and e["data"].endswith(f"{e['arm']}-sample-{e['seed']}") for e in entries)
    whole = set(RunDir(out / "arms" / "longest-64").records()["id"].to_list())
    draws = [set(pl.read_parquet(RunDir(e["data"]).data_files())["id"].to_list()) for e in entries]
    assert all(d <= whole or d <= set(RunDir(out / "arms" / "random-64").records()["id"]) for d in draws)
    longest = [d for d, e in zip(draws, entries, strict=True) if e["arm"] == "longest-64"]
    assert longest[0] != longest[1] and all(d <= whole for d in longest)
    summary = json.loads((out / "summary.json").read_text())
    assert {r["arm"]: r["records"] for r in summary["arms"]} == {"random-64": 64, "longest-64": 64}

    spec.write_text(head + arms.format(source=source, n=100))
    done = run_cli("ablate", str(spec), "--out", str(tmp_path / "abl2"), "--quiet", check=False)
    assert done.returncode == 2 and "arm random-64: sample 100 is larger than the arm (64 records)" in done.stderr


def test_bad_specs_name_the_problem(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nbudget: steps\narms:\n  - {name: a, run: nowhere}\n")
    done = run_cli("ablate", str(spec), check=False)
    assert done.returncode == 2 and "budget: steps needs steps" in done.stderr
    spec.write_text("name: x\narms:\n  - {name: a, run: nowhere}\n")
    done = run_cli("ablate", str(spec), "--out", str(tmp_path / "o"), check=False)
    assert done.returncode == 2 and "nowhere is not a run directory" in done.stderr


def test_arms_that_cannot_be_built_name_the_problem(tmp_path: Path) -> None:
    from curate.training.ablate import ci_source

    source = ci_source(tmp_path / "data", progress=False)
    spec = tmp_path / "big.yaml"
    arm = f"{{name: random-500, run: {source}, select: {{strategy: random, n: 500}}}}"
    spec.write_text(f"name: big\narms:\n  - {arm}\n")
    done = run_cli("ablate", str(spec), "--out", str(tmp_path / "o"), check=False)
    assert done.returncode == 2 and "arm random-500: asked for 500 records but" in done.stderr
    assert "has only 300" in done.stderr
    spec.write_text(
        f"name: nosel\narms:\n  - {{name: c, run: {source}, recipe: 'curate-alpaca:nope', select: {{n: 8}}}}\n"
    )
    done = run_cli("ablate", str(spec), "--out", str(tmp_path / "o"), check=False)
    assert done.returncode == 2 and "has no selection named 'nope'" in done.stderr and "lima-1k" in done.stderr
    spec.write_text("name: at\narms:\n  - {name: c, run: '@nowhere'}\n")
    done = run_cli("ablate", str(spec), check=False)
    assert done.returncode == 2 and "@nowhere names no entry of sources" in done.stderr
    spec.write_text(f"name: j\nifeval: {{prompt: 3}}\narms:\n  - {{name: a, run: {source}}}\n")
    done = run_cli("ablate", str(spec), check=False)
    assert done.returncode == 2 and "unknown ifeval settings ['prompt']" in done.stderr


def test_presets_are_the_shipped_yaml_files() -> None:
    from curate.training.ablate import preset

    ci, cpu, full = preset("ci"), preset("cpu"), preset("full")
    assert ci.ifeval["prompts"] <= 8 and ci.budget == "steps"
    assert len(cpu.seeds) >= 3 and {a.name for a in cpu.arms} == {"curated-9k", "random-9k"}
    assert next(a for a in cpu.arms if a.name == "curated-9k").recipe == "curate-alpaca"
    assert {a.sample for a in cpu.arms} == {128} and cpu.sources["alpaca"] == {"dataset": "alpaca"}
    assert full.budget == "epochs" and len(full.seeds) == 3 and full.ifeval["prompts"] == 541
    assert [a.name for a in full.arms] == ["full-52k", "curated-9k", "random-9k", "lima-1k", "random-1k", "longest-1k"]
    with pytest.raises(CurateError, match="unknown preset 'gpu'"):
        preset("gpu")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_ci_preset_runs_end_to_end_with_ifeval(tmp_path: Path) -> None:
    out = tmp_path / "ci"
    done = run_cli("ablate", "--preset", "ci", "--out", str(out), "--quiet")
    assert "| longest-64 | random-64 | IFEval prompt-strict % |" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert {r["arm"] for r in summary["arms"]} == {"random-64", "longest-64"}
    assert all(r["ifeval_prompt_strict"]["n"] == 2 for r in summary["arms"])
    assert "IFEval on 4 prompts" in summary["metrics_run"]["ifeval"]


def test_ablate_flow_and_deployment() -> None:
    import yaml

    from flows.ablate import ablate
    from tests.conftest import ROOT

    assert ablate.name == "ablate"
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    entry = next(d for d in deployments if d["name"] == "ablate")
    assert entry["entrypoint"] == "flows/ablate.py:ablate"
