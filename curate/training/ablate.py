"""Fixed-model data ablations: the same model, hyperparameters and seeds on every arm.

An ablation spec (YAML) names the arms; an arm is a run directory, or a selection over one
(``select:`` with the strategies of :mod:`curate.selection.strategies`), materialized as its own run
directory under ``ABL/arms/``. ``n`` of a selection may name another arm: "the same size as
that arm", which also makes a random selection that arm's control.

::

    name: alpaca-9k
    budget: epochs          # or steps: equal epochs per arm, or equal optimizer steps (compute)
    epochs: 3               # with budget: epochs
    steps: 1000             # with budget: steps
    seeds: [0, 1, 2]
    train: {max_len: 512, batch_size: 8, grad_accum: 2, lr: 3.0e-4, eval_n: 805}
    arms:
      - {name: curated-9k, run: runs/curate-alpaca-scored, select: {strategy: top_k, by: quality_probe, n: 9000}}
      - {name: random-9k, run: runs/curate-alpaca-scored, select: {strategy: random, n: curated-9k, seed: 0}}

Layout of the ablation directory::

    ABL/spec.json                 the resolved spec
    ABL/arms/<arm>/               run directories of selection arms
    ABL/train/<arm>/seed-<s>/     one trainer output per arm and seed (adapter, metrics, loss curve)
    ABL/results.json              one entry per arm and seed
    ABL/summary.json              per-arm mean and 95% CI over seeds, paired differences vs controls
    ABL/results.md                the same as tables
    ABL/ablation.png              loss curves and the final metric with error bars

Each arm's data run directory also gets ``RUN/ablations/<name>.json`` and its card is rebuilt
with an "Ablation results" section.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from curate.errors import CurateError
from curate.io.atomic import write_bytes, write_json
from curate.training.stats import mean_ci, paired_difference
from curate.training.trainer import TrainConfig

METRIC = "eval_loss"
PRESET_DIR = Path(__file__).resolve().parents[1] / "recipes"
CI_SOURCE_RECORDS = 300
_TRAIN_KEYS = set(TrainConfig.__dataclass_fields__) - {"seed", "epochs", "max_steps"}


@dataclass
class Arm:
    name: str
    run: str
    select: dict[str, Any] | None = None
    control: str | None = None

    @property
    def is_random(self) -> bool:
        return bool(self.select) and self.select.get("strategy") == "random"


@dataclass
class AblationSpec:
    name: str
    arms: list[Arm]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: str = "epochs"
    epochs: float = 3.0
    steps: int | None = None
    train: dict[str, Any] = field(default_factory=dict)
    save_every: int = 50

    def __post_init__(self) -> None:
        if self.budget not in ("epochs", "steps"):
            raise CurateError(f"ablation {self.name}: budget must be epochs or steps, not {self.budget!r}")
        if self.budget == "steps" and not self.steps:
            raise CurateError(f"ablation {self.name}: budget: steps needs steps: N")
        unknown = set(self.train) - _TRAIN_KEYS
        if unknown:
            raise CurateError(f"ablation {self.name}: unknown train settings {sorted(unknown)}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names) or not names:
            raise CurateError(f"ablation {self.name}: arms need distinct names (got {names})")
        if not self.seeds:
            raise CurateError(f"ablation {self.name}: at least one seed")

    def config(self, seed: int) -> TrainConfig:
        if self.budget == "steps":
            return TrainConfig(**self.train, seed=seed, max_steps=self.steps)
        return TrainConfig(**self.train, seed=seed, epochs=self.epochs)

    def budget_text(self) -> str:
        if self.budget == "steps":
            return f"equal steps: {self.steps} optimizer steps per arm and seed"
        return f"equal epochs: {self.epochs:g} epoch(s) per arm and seed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "budget": self.budget,
            "epochs": self.epochs if self.budget == "epochs" else None,
            "steps": self.steps if self.budget == "steps" else None,
            "seeds": self.seeds,
            "train": self.train,
            "save_every": self.save_every,
            "arms": [a.__dict__ for a in self.arms],
        }


def load_spec(path: str | Path) -> AblationSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CurateError(f"{path}: no such ablation spec") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CurateError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML") from None
    return spec_from_dict(raw, str(path))


def spec_from_dict(raw: Any, where: str = "ablation spec") -> AblationSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("arms"), list):
        raise CurateError(f"{where}: needs a mapping with an arms list")
    raw = dict(raw)
    try:
        arms = [Arm(**arm) for arm in raw.pop("arms")]
        return AblationSpec(**raw, arms=arms)
    except TypeError as exc:
        raise CurateError(f"{where}: {exc}") from None


def preset(name: str, out: Path, progress: bool = True) -> AblationSpec:
    """``ci``: a few hundred Alpaca records ingested on the fly, two arms, two seeds, short
    sequences, a few optimizer steps. ``full``: ``curate/recipes/ablation-full.yaml``."""
    if name == "full":
        return load_spec(PRESET_DIR / "ablation-full.yaml")
    if name != "ci":
        raise CurateError(f"unknown preset {name!r} (ci or full)")
    source = ci_source(out / "data", progress)
    return AblationSpec(
        name="ci",
        budget="steps",
        steps=4,
        seeds=[0, 1],
        train={"max_len": 96, "batch_size": 4, "grad_accum": 1, "lr": 1e-3, "warmup_ratio": 0.1, "eval_n": 16},
        arms=[
            Arm("random-64", str(source), {"strategy": "random", "n": 64, "seed": 0}),
            Arm("longest-64", str(source), {"strategy": "longest", "n": "random-64"}),
        ],
    )


def ci_source(folder: Path, progress: bool = True) -> Path:
    """The first ``CI_SOURCE_RECORDS`` Alpaca records as a run directory (built once)."""
    from curate.io import catalog
    from curate.io.ingest import IngestOptions
    from curate.run.pipeline import RunWriter, UpToDate

    records = json.loads(catalog.resolve(catalog.lookup("alpaca")).read_text())[:CI_SOURCE_RECORDS]
    source = folder / f"alpaca-{CI_SOURCE_RECORDS}.json"
    write_bytes(source, json.dumps(records, indent=1).encode())
    run = folder / f"alpaca-{CI_SOURCE_RECORDS}"
    writer = RunWriter(
        run, "ingest", {"sources": [str(source)]}, invocation="curate ablate --preset ci", overwrite=True
    )
    with contextlib.suppress(UpToDate):
        writer.ingest_streaming([str(source)], IngestOptions(format="alpaca", source="alpaca"), progress=progress)
    return run


def _arm_size(arm: Arm, sizes: dict[str, int]) -> int | None:
    n = (arm.select or {}).get("n")
    if isinstance(n, str):
        return sizes.get(n)
    return n


def prepare_arms(spec: AblationSpec, out: Path, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Each arm's data run directory and size; selection arms are materialized under ``out/arms``."""
    from curate.run.directory import RunDir

    prepared: dict[str, dict[str, Any]] = {}
    pending = list(spec.arms)
    while pending:
        sizes = {name: info["records"] for name, info in prepared.items()}
        ready = [a for a in pending if not isinstance((a.select or {}).get("n"), str) or a.select["n"] in sizes]
        if not ready:
            raise CurateError(f"ablation {spec.name}: arms {[a.name for a in pending]} name sizes of unknown arms")
        for arm in ready:
            if not RunDir.is_run(arm.run):
                raise CurateError(f"arm {arm.name}: {arm.run} is not a run directory (no manifest.json)")
            if arm.select:
                run = _materialize(arm, _arm_size(arm, sizes), out / "arms" / arm.name, progress)
            else:
                run = Path(arm.run)
            prepared[arm.name] = {"run": str(run), "records": RunDir(run).manifest()["records"]["kept"]}
            pending.remove(arm)
    return {a.name: prepared[a.name] for a in spec.arms}


def _materialize(arm: Arm, n: int | None, target: Path, progress: bool) -> Path:
    from curate.io.ingest import IngestOptions
    from curate.run.pipeline import RunWriter, UpToDate
    from curate.selection.strategies import SelectParams, select
    from dataset_cards.card import write_card

    values = {**arm.select, "n": n}
    params = SelectParams(**values)
    if params.strategy == "diverse":
        raise CurateError(f"arm {arm.name}: make diverse selections with `curate select` and name that run")
    plan = {"input": [arm.run], "select": params.as_dict()}
    writer = RunWriter(target, "select", plan, invocation="curate ablate", overwrite=True)
    try:
        records = writer.open_input([arm.run], IngestOptions(), progress=progress)
    except UpToDate:
        return target
    scores = writer.run.annotation_column(params.by) if params.by and params.by != "response_words" else None
    writer.finish(writer.add(select(records, params, scores=scores)))
    write_card(target)
    return target


def train_arm(
    spec: AblationSpec, arm: str, run: str, seed: int, out: Path, progress: bool = True, device: str | None = None
) -> dict[str, Any]:
    """Train one arm with one seed (resuming or reusing what is already there); its result entry."""
    from curate.training.trainer import train

    train_dir = out / "train" / arm / f"seed-{seed}"
    result = train(run, train_dir, spec.config(seed), device=device, save_every=spec.save_every, progress=progress)
    m = result.metrics
    return {
        "arm": arm,
        "seed": seed,
        "budget": spec.budget,
        "data": run,
        "examples": m["data"]["examples"],
        "steps": m["steps"],
        "epochs": m["epochs"],
        "eval_loss": m["eval"]["loss"],
        "eval_perplexity": m["eval"]["perplexity"],
        "eval_prompts": m["eval"]["prompts"],
        "final_train_loss": m["final_train_loss"],
        "losses": m["losses"],
        "train_dir": str(train_dir),
        "tokens_per_s": m["tokens_per_s"],
        "seconds": m["seconds"],
        "reused": result.up_to_date,
    }


def controls(spec: AblationSpec, arms: dict[str, dict[str, Any]]) -> dict[str, str]:
    """arm -> its random control of the same size: named with ``control:``, or a random
    selection whose ``n`` names the arm, or a random arm with the same record count."""
    found: dict[str, str] = {}
    randoms = [a for a in spec.arms if a.is_random]
    for arm in spec.arms:
        if arm.control:
            if arm.control not in arms:
                raise CurateError(f"arm {arm.name}: control {arm.control} is not an arm")
            found[arm.name] = arm.control
            continue
        if arm.is_random:
            continue
        named = [r.name for r in randoms if r.select.get("n") == arm.name]
        same = [r.name for r in randoms if arms[r.name]["records"] == arms[arm.name]["records"]]
        if named or same:
            found[arm.name] = (named or same)[0]
    return found


def summarize(spec: AblationSpec, arms: dict[str, dict[str, Any]], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-arm mean and 95% CI over seeds of every metric, and paired differences vs controls."""
    table = []
    for name, info in arms.items():
        mine = [e for e in entries if e["arm"] == name]
        row = {"arm": name, "data": info["run"], "records": info["records"], "seeds": [e["seed"] for e in mine]}
        for key in ("eval_loss", "eval_perplexity", "final_train_loss"):
            row[key] = _rounded(mean_ci([e[key] for e in mine]))
        table.append(row)
    paired = []
    for arm, control in controls(spec, arms).items():
        by_seed = {name: {e["seed"]: e[METRIC] for e in entries if e["arm"] == name} for name in (arm, control)}
        diff = _rounded(paired_difference(by_seed[arm], by_seed[control]))
        verdict = "no clear difference"
        if diff["high"] is not None and diff["high"] < 0:
            verdict = f"{arm} better (lower loss; the 95% CI excludes 0)"
        elif diff["low"] is not None and diff["low"] > 0:
            verdict = f"{control} better (lower loss; the 95% CI excludes 0)"
        paired.append({"arm": arm, "control": control, "metric": METRIC, **diff, "verdict": verdict})
    first = entries[0] if entries else {}
    return {
        "name": spec.name,
        "metric": METRIC,
        "budget": spec.budget,
        "budget_text": spec.budget_text(),
        "seeds": spec.seeds,
        "eval_prompts": first.get("eval_prompts"),
        "confidence": 0.95,
        "interval": "Student t over seeds (n - 1 degrees of freedom)",
        "arms": table,
        "paired": paired,
    }


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary.items()}


def write_results(
    spec: AblationSpec, out: Path, arms: dict[str, dict[str, Any]], entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """results.json, summary.json, results.md, ablation.png, and each data run's card section."""
    import numpy as np

    from dataset_cards.ablation import results_markdown
    from dataset_cards.figures import ablation

    summary = summarize(spec, arms, entries)
    write_json(out / "results.json", entries)
    write_json(out / "summary.json", summary)
    model = spec.train.get("model")
    write_bytes(out / "results.md", results_markdown(summary, model).encode())
    curves = {}
    for name in arms:
        runs = [e["losses"] for e in entries if e["arm"] == name]
        if runs:
            width = min(len(r) for r in runs)
            curves[name] = np.mean([r[:width] for r in runs], axis=0).round(6).tolist()
    finals = {}
    for row in summary["arms"]:
        s = row[METRIC]
        if s["mean"] is not None:
            finals[row["arm"]] = (s["mean"], s["low"] if s["low"] is not None else s["mean"], s["high"] or s["mean"])
    ablation(curves, finals, out / "ablation.png", f"Ablation {spec.name}: {spec.budget_text()}", "eval loss")
    _add_to_cards(spec, out, arms, summary)
    return summary


def _add_to_cards(spec: AblationSpec, out: Path, arms: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    from dataset_cards.card import write_card

    for name, info in arms.items():
        run = Path(info["run"])
        record = {"ablation": spec.name, "dir": str(out), "arm": name, **summary}
        write_json(run / "ablations" / f"{spec.name}.json", record, durable=False)
        write_card(run)


def run_ablation(
    spec: AblationSpec, out: str | Path, progress: bool = True, device: str | None = None
) -> dict[str, Any]:
    """Prepare the arms, train every arm with every seed, and write the results."""
    from curate.run.progress import Progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.as_dict())
    arms = prepare_arms(spec, out, progress)
    entries = []
    bar = Progress(f"ablation {spec.name}", "trainings", total=len(arms) * len(spec.seeds), enabled=progress)
    for name, info in arms.items():
        for seed in spec.seeds:
            entries.append(train_arm(spec, name, info["run"], seed, out, progress, device))
            bar.advance(1)
    bar.close()
    return write_results(spec, out, arms, entries)


def with_seeds(spec: AblationSpec, seeds: list[int] | None) -> AblationSpec:
    return replace(spec, seeds=seeds) if seeds else spec
