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
    sources: {alpaca: {dataset: alpaca, records: 2000}}   # optional: "@alpaca" below, ingested on the fly
    ifeval: {prompts: 48, max_new_tokens: 128, batch_size: 8}  # optional: IFEval on each adapter
    arms:
      - {name: curated-9k, run: runs/curate-alpaca-scored, select: {strategy: top_k, by: quality_probe, n: 9000}}
      - {name: random-9k, run: runs/curate-alpaca-scored, select: {strategy: random, n: curated-9k, seed: 0}}
      - {name: recipe-128, run: "@alpaca", recipe: curate-alpaca, select: {n: 128}}

An arm with ``recipe:`` is that recipe (a name in ``curate/recipes`` or a YAML path) run on the
arm's ``run`` with its ``select`` size set to the arm's ``n``: the curated arm follows whatever the
recipe selects. ``sample: N`` trains each seed on its own random N of the arm's records (seed s draws
``ABL/arms/<arm>-sample-<s>``): a machine-sized stand-in for an arm too large to train on whole, such as
the curated 9k on a CPU; the arm's card and size stay those of the whole arm.

Metrics: held-out loss on AlpacaEval references (always), IFEval prompt- and instruction-level
accuracy, strict and loose (with ``ifeval:``), and ``curate pairwise`` with a judge endpoint
(``judge:``); the summary says which ran.

Layout of the ablation directory::

    ABL/spec.json                 the resolved spec
    ABL/arms/<arm>/               run directories of selection arms
    ABL/data/<source>/            run directories of ``sources:``
    ABL/train/<arm>/seed-<s>/     one trainer output per arm and seed (adapter, metrics, loss curve,
                                  generations.jsonl and ifeval.json with ``ifeval:``)
    ABL/results.json              one entry per arm and seed
    ABL/summary.json              per-arm mean and 95% CI over seeds, paired differences vs controls
    ABL/results.md                the same as tables
    ABL/ablation.png              loss curves and every metric per arm with error bars

Each arm's data run directory also gets ``RUN/ablations/<name>.json`` and its card is rebuilt
with an "Ablation results" section.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from curate.errors import CurateError
from curate.io.atomic import write_bytes, write_json
from curate.run.directory import claim_folder
from curate.training.stats import mean_ci, paired_difference
from curate.training.trainer import TrainConfig

METRIC = "eval_loss"
PRESET_DIR = Path(__file__).resolve().parents[1] / "recipes"
PRESETS = ("ci", "cpu", "full")
CI_SOURCE_RECORDS = 300
_TRAIN_KEYS = set(TrainConfig.__dataclass_fields__) - {"seed", "epochs", "max_steps"}
_IFEVAL_KEYS = {"prompts", "max_new_tokens", "batch_size"}
_JUDGE_KEYS = {"base_url", "judge_model", "api_key_env", "n", "max_new_tokens"}
# metric key -> (label, True when higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "eval_loss": ("AlpacaEval reference loss", False),
    "ifeval_prompt_strict": ("IFEval prompt-strict", True),
    "ifeval_prompt_loose": ("IFEval prompt-loose", True),
    "ifeval_inst_strict": ("IFEval instruction-strict", True),
    "ifeval_inst_loose": ("IFEval instruction-loose", True),
    "pairwise_win_minus_loss": ("pairwise win - loss rate vs control", True),
}
# A recipe arm's builder: (recipe, source run, n, target, progress) -> the run directory it wrote.
RecipeRunner = Callable[[str, str, int, Path, bool], Path]


@dataclass
class Arm:
    name: str
    run: str
    select: dict[str, Any] | None = None
    control: str | None = None
    recipe: str | None = None
    sample: int | None = None

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
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    ifeval: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None

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
        for key, allowed in (("ifeval", _IFEVAL_KEYS), ("judge", _JUDGE_KEYS)):
            unknown = set(getattr(self, key) or {}) - allowed
            if unknown:
                raise CurateError(f"ablation {self.name}: unknown {key} settings {sorted(unknown)}")
        if self.judge and not (self.judge.get("base_url") and self.judge.get("judge_model")):
            raise CurateError(f"ablation {self.name}: judge needs base_url and judge_model")
        for arm in self.arms:
            if arm.recipe and not (arm.select and isinstance(arm.select.get("n"), int)):
                raise CurateError(f"arm {arm.name}: a recipe arm needs select: {{n: N}} (its size)")
            if arm.sample is not None and (not isinstance(arm.sample, int) or arm.sample < 1):
                raise CurateError(f"arm {arm.name}: sample must be a positive number of records")
            if arm.run.startswith("@") and arm.run[1:] not in self.sources:
                raise CurateError(f"arm {arm.name}: {arm.run} names no entry of sources {sorted(self.sources)}")

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
            "sources": self.sources,
            "ifeval": self.ifeval,
            "judge": {k: v for k, v in (self.judge or {}).items()} or None,
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


def preset(name: str) -> AblationSpec:
    """A shipped ablation: ``curate/recipes/ablation-<name>.yaml`` (ci, cpu or full)."""
    if name not in PRESETS:
        raise CurateError(f"unknown preset {name!r} ({', '.join(PRESETS)})")
    return load_spec(PRESET_DIR / f"ablation-{name}.yaml")


def ci_source(folder: Path, progress: bool = True) -> Path:
    """The first ``CI_SOURCE_RECORDS`` Alpaca records as a run directory (built once)."""
    return source_run("alpaca", {"dataset": "alpaca", "records": CI_SOURCE_RECORDS}, folder, progress)


def source_run(name: str, source: dict[str, Any], folder: Path, progress: bool = True) -> Path:
    """A registered dataset (or its first ``records`` records) ingested as a run directory, built once."""
    from curate.io import catalog
    from curate.io.ingest import IngestOptions
    from curate.run.pipeline import RunWriter, UpToDate

    unknown = set(source) - {"dataset", "records"}
    dataset = catalog.lookup(str(source.get("dataset")))
    if unknown or dataset is None:
        raise CurateError(f"source {name}: needs dataset: <a registered name> and optional records: N")
    path = catalog.resolve(dataset)
    limit = source.get("records")
    spec = str(path)
    if limit:
        if path.suffix == ".json":
            rows = json.loads(path.read_text())[:limit]
            text = json.dumps(rows, indent=1)
        else:
            text = "".join(path.read_text().splitlines(keepends=True)[:limit])
        sliced = folder / f"{dataset.name}-{limit}{path.suffix}"
        write_bytes(sliced, text.encode())
        spec = str(sliced)
    run = folder / (f"{dataset.name}-{limit}" if limit else dataset.name)
    writer = RunWriter(run, "ingest", {"sources": [spec]}, invocation="curate ablate", overwrite=True)
    options = IngestOptions(format=dataset.format, source=dataset.name, license=dataset.license)
    with contextlib.suppress(UpToDate):
        writer.ingest_streaming([spec], options, progress=progress)
    return run


def _arm_size(arm: Arm, sizes: dict[str, int]) -> int | None:
    n = (arm.select or {}).get("n")
    if isinstance(n, str):
        return sizes.get(n)
    return n


def prepare_arms(
    spec: AblationSpec, out: Path, progress: bool = True, run_recipe: RecipeRunner | None = None
) -> dict[str, dict[str, Any]]:
    """Each arm's data run directory and size; selection and recipe arms are materialized under
    ``out/arms``. ``run_recipe`` builds recipe arms (the Python API's and the CLI's run recipes)."""
    from curate.run.directory import RunDir

    built = {name: str(source_run(name, src, out / "data", progress)) for name, src in spec.sources.items()}
    prepared: dict[str, dict[str, Any]] = {}
    pending = list(spec.arms)
    while pending:
        sizes = {name: info["records"] for name, info in prepared.items()}
        ready = [a for a in pending if not isinstance((a.select or {}).get("n"), str) or a.select["n"] in sizes]
        if not ready:
            raise CurateError(f"ablation {spec.name}: arms {[a.name for a in pending]} name sizes of unknown arms")
        for arm in ready:
            source = built[arm.run[1:]] if arm.run.startswith("@") else arm.run
            if not RunDir.is_run(source):
                raise CurateError(f"arm {arm.name}: {source} is not a run directory (no manifest.json)")
            wanted = _arm_size(arm, sizes)
            if arm.recipe:
                if run_recipe is None:
                    raise CurateError(f"arm {arm.name}: recipe arms run through `curate ablate` or curate.ablate")
                run = run_recipe(arm.recipe, source, wanted, out / "arms" / arm.name, progress)
            elif arm.select:
                run = _materialize(replace(arm, run=source), wanted, out / "arms" / arm.name, progress)
            else:
                run = Path(source)
            records = RunDir(run).manifest()["records"]["kept"]
            if wanted is not None and records < wanted:
                raise CurateError(
                    f"arm {arm.name}: asked for {wanted:,} records but {run} has only {records:,} "
                    f"(its source {source} is too small after curation)"
                )
            prepared[arm.name] = {"run": str(run), "records": records}
            if arm.sample:
                prepared[arm.name]["samples"] = _samples(arm, run, records, spec.seeds, out, progress)
            pending.remove(arm)
    return {a.name: prepared[a.name] for a in spec.arms}


def _samples(arm: Arm, run: Path, records: int, seeds: list[int], out: Path, progress: bool) -> dict[int, str]:
    """Seed -> the run directory of that seed's random ``arm.sample`` records of the arm."""
    if records < arm.sample:
        raise CurateError(f"arm {arm.name}: sample {arm.sample:,} is larger than the arm ({records:,} records)")
    drawn = {}
    for seed in seeds:
        draw = Arm(arm.name, str(run), {"strategy": "random", "n": arm.sample, "seed": seed})
        drawn[seed] = str(_materialize(draw, arm.sample, out / "arms" / f"{arm.name}-sample-{seed}", progress))
    return drawn


def training_run(info: dict[str, Any], seed: int) -> str:
    """The run directory an arm trains on with ``seed``: its seed's sample, or the whole arm."""
    return info.get("samples", {}).get(seed, info["run"])


def open_ablation(spec: AblationSpec, out: str | Path) -> Path:
    """Claim the ablation folder (never a user's) and record the resolved spec in it."""
    out = claim_folder(out, "ablation", signs=("spec.json",))
    write_json(out / "spec.json", spec.as_dict())
    return out


def _materialize(arm: Arm, n: int | None, target: Path, progress: bool) -> Path:
    from curate.io.ingest import IngestOptions
    from curate.run.pipeline import RunWriter, UpToDate
    from curate.selection.strategies import SelectParams, select, stored_scores
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
    scores = stored_scores(params.by, writer.run.annotation_column)
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
    if "eval" not in m:
        raise CurateError(f"training {train_dir} stopped at step {m['steps']} of {m['of']}; rerun to resume")
    entry = {
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
    if spec.ifeval:
        entry.update(ifeval_entry(spec, train_dir, progress, device))
    return entry


def ifeval_entry(spec: AblationSpec, train_dir: Path, progress: bool, device: str | None) -> dict[str, Any]:
    """IFEval accuracies of one trained adapter (cached generations; see curate.training.evaluate)."""
    from curate.training.evaluate import GenerationSettings, evaluate_ifeval

    settings = GenerationSettings(
        max_new_tokens=spec.ifeval.get("max_new_tokens", 256), batch_size=spec.ifeval.get("batch_size", 8)
    )
    result = evaluate_ifeval(train_dir, spec.ifeval.get("prompts"), settings, device, progress)
    return {
        **{f"ifeval_{k}": result[k] for k in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose")},
        "ifeval_prompts": result["prompts"],
        "ifeval_instructions": result["instructions"],
        "ifeval_skipped": result["skipped"],
        "ifeval_max_new_tokens": result["max_new_tokens"],
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


def judge_entries(spec: AblationSpec, arms: dict[str, dict[str, Any]], entries: list[dict[str, Any]]) -> None:
    """With ``judge:``, each arm's answers against its control's, seed by seed, judged in both orders
    (``curate pairwise``); adds ``pairwise_win_minus_loss`` (and the rates) to the arm's entries."""
    if not spec.judge:
        return
    from curate.training.pairwise import endpoint_judge, judge_arms

    j = spec.judge
    judge = endpoint_judge(j["base_url"], j["judge_model"], j.get("api_key_env"))
    by_key = {(e["arm"], e["seed"]): e for e in entries}
    for arm, control in controls(spec, arms).items():
        for seed in spec.seeds:
            mine, theirs = by_key.get((arm, seed)), by_key.get((control, seed))
            if not (mine and theirs):
                continue
            result = judge_arms(
                mine["train_dir"],
                theirs["train_dir"],
                judge,
                n=j.get("n", 50),
                max_new_tokens=j.get("max_new_tokens", 256),
            )
            mine.update(
                pairwise_win_minus_loss=round(100 * (result["win_rate"] - result["loss_rate"]), 4),
                pairwise_win_rate=result["win_rate"],
                pairwise_loss_rate=result["loss_rate"],
                pairwise_prompts=result["prompts"],
                pairwise_judge=j["judge_model"],
            )


def metrics_run(spec: AblationSpec, entries: list[dict[str, Any]]) -> dict[str, str]:
    """Which of the three metrics ran, in words (for the results table)."""
    first = entries[0] if entries else {}
    ran = {"eval_loss": f"held-out response loss on {first.get('eval_prompts')} AlpacaEval references"}
    if spec.ifeval:
        skipped = sorted({k for e in entries for k in e.get("ifeval_skipped", {})})
        ran["ifeval"] = (
            f"IFEval on {first.get('ifeval_prompts')} prompts ({first.get('ifeval_instructions')} instructions), "
            f"greedy, at most {first.get('ifeval_max_new_tokens')} new tokens, lm-eval checkers"
            + (f"; skipped (checker cannot run offline): {', '.join(skipped)}" if skipped else "")
        )
    else:
        ran["ifeval"] = "not run (no ifeval: in the spec)"
    if spec.judge:
        ran["pairwise"] = f"curate pairwise, judge {spec.judge['judge_model']}, position-swapped, vs each control"
    else:
        ran["pairwise"] = "not run (needs a judge endpoint: judge: {base_url, judge_model} or `curate pairwise`)"
    return ran


def verdict(arm: str, control: str, metric: str, diff: dict[str, Any]) -> str:
    """One honest line: the difference in points (or loss), its interval, and what it says."""
    label, higher_better = METRICS[metric]
    if diff["mean"] is None:
        return f"{arm} − {control}: no paired seeds"
    loss = metric == "eval_loss"
    scale, unit = (1, "") if loss else (1, " points")
    value = f"{diff['mean'] * scale:+.4f}" if loss else f"{diff['mean']:+.1f}"
    if diff["low"] is None:
        return f"{arm} − {control}: {value}{unit} {label} (one seed, no interval): not distinguishable"
    interval = f"[{diff['low']:.4f}, {diff['high']:.4f}]" if loss else f"[{diff['low']:.1f}, {diff['high']:.1f}]"
    if diff["low"] > 0 or diff["high"] < 0:
        better = (diff["low"] > 0) == higher_better
        word = "better" if better else "worse"
    else:
        word = "not distinguishable"
    return f"{arm} − {control}: {value}{unit} {label}, 95 % CI {interval}: {word}"


def summarize(spec: AblationSpec, arms: dict[str, dict[str, Any]], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-arm mean and 95% CI over seeds of every metric, and paired differences vs controls."""
    present = [k for k in METRICS if any(e.get(k) is not None for e in entries)]
    table = []
    for name, info in arms.items():
        mine = [e for e in entries if e["arm"] == name]
        row = {"arm": name, "data": info["run"], "records": info["records"], "seeds": [e["seed"] for e in mine]}
        if info.get("samples"):
            row["trained_on"] = mine[0]["examples"] if mine else None
        for key in ("eval_loss", "eval_perplexity", "final_train_loss", *present[1:]):
            row[key] = _rounded(mean_ci([e[key] for e in mine if e.get(key) is not None]))
        table.append(row)
    paired = []
    for arm, control in controls(spec, arms).items():
        for metric in present:
            if metric == "pairwise_win_minus_loss":
                by_seed = {e["seed"]: e[metric] for e in entries if e["arm"] == arm and e.get(metric) is not None}
                diff = _rounded({**mean_ci(list(by_seed.values())), "seeds": sorted(by_seed)})
            else:
                by_seed = {name: {e["seed"]: e[metric] for e in entries if e["arm"] == name} for name in (arm, control)}
                diff = _rounded(paired_difference(by_seed[arm], by_seed[control]))
            paired.append(
                {
                    "arm": arm,
                    "control": control,
                    "metric": metric,
                    **diff,
                    "verdict": verdict(arm, control, metric, diff),
                }
            )
    first = entries[0] if entries else {}
    return {
        "name": spec.name,
        "metric": METRIC,
        "metrics": present,
        "metrics_run": metrics_run(spec, entries),
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
    panels = {}
    for metric in summary["metrics"]:
        finals = {}
        for row in summary["arms"]:
            s = row[metric]
            if s["mean"] is not None:
                finals[row["arm"]] = (s["mean"], s["mean"] if s["low"] is None else s["low"], s["high"] or s["mean"])
        if finals:
            panels[METRICS[metric][0]] = finals
    ablation(curves, panels, out / "ablation.png", f"Ablation {spec.name}: {spec.budget_text()}")
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
    spec: AblationSpec,
    out: str | Path,
    progress: bool = True,
    device: str | None = None,
    run_recipe: RecipeRunner | None = None,
) -> dict[str, Any]:
    """Prepare the arms, train and evaluate every arm with every seed, and write the results."""
    from curate.run.progress import Progress

    out = open_ablation(spec, out)
    arms = prepare_arms(spec, out, progress, run_recipe)
    entries = []
    bar = Progress(f"ablation {spec.name}", "trainings", total=len(arms) * len(spec.seeds), enabled=progress)
    for name, info in arms.items():
        for seed in spec.seeds:
            entries.append(train_arm(spec, name, training_run(info, seed), seed, out, progress, device))
            bar.advance(1)
    bar.close()
    judge_entries(spec, arms, entries)
    return write_results(spec, out, arms, entries)


def with_seeds(spec: AblationSpec, seeds: list[int] | None) -> AblationSpec:
    return replace(spec, seeds=seeds) if seeds else spec
