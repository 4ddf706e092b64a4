"""The ``ablate`` flow: materialize the arms, train and evaluate every arm with every seed (one task
each), then judge (with ``judge:``) and write the results and the dataset cards' sections.

Only wiring; the logic lives in :mod:`curate.training.ablate` and :mod:`curate.training.trainer`. Reruns reuse
finished trainings and resume killed ones from their checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from curate.api import recipe_arm
from curate.training.ablate import (
    AblationSpec,
    judge_entries,
    load_spec,
    open_ablation,
    prepare_arms,
    preset,
    train_arm,
    training_run,
    with_seeds,
    write_results,
)
from dataset_cards.ablation import results_markdown


@task(cache_policy=NONE)
def spec_task(
    spec: str | None, preset_name: str | None, out: str | None, seeds: list[int] | None
) -> tuple[AblationSpec, Path]:
    loaded = with_seeds(preset(preset_name) if preset_name else load_spec(spec), seeds)
    return loaded, open_ablation(loaded, out or f"ablations/{loaded.name}")


@task(cache_policy=NONE)
def arms_task(spec: AblationSpec, out: Path) -> dict[str, dict[str, Any]]:
    return prepare_arms(spec, out, progress=False, run_recipe=recipe_arm)


@task(cache_policy=NONE, task_run_name="train {arm} seed {seed}")
def train_task(spec: AblationSpec, arm: str, run: str, seed: int, out: Path, device: str | None) -> dict[str, Any]:
    return train_arm(spec, arm, run, seed, out, progress=False, device=device)


@task(cache_policy=NONE)
def results_task(spec: AblationSpec, out: Path, arms: dict[str, dict[str, Any]], entries: list[dict[str, Any]]):
    judge_entries(spec, arms, entries)
    return write_results(spec, out, arms, entries)


@flow(name="ablate", log_prints=True)
def ablate(
    spec: str | None = None,
    preset_name: str | None = "ci",
    out: str | None = None,
    seeds: list[int] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Run an ablation from a spec file (or a preset: ci, cpu, full); returns the summary."""
    logger = get_run_logger()
    loaded, target = spec_task(spec, None if spec else preset_name, out, seeds)
    arms = arms_task(loaded, target)
    entries = [
        train_task(loaded, name, training_run(info, seed), seed, target, device)
        for name, info in arms.items()
        for seed in loaded.seeds
    ]
    summary = results_task(loaded, target, arms, entries)
    table = results_markdown(summary, loaded.train.get("model"))
    create_markdown_artifact(key=f"ablation-{loaded.name}", markdown=table, description="per-arm mean and 95% CI")
    logger.info("results in %s:\n%s", target, table)
    return summary
