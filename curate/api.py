"""The Python API: stage functions on record frames, and a :class:`Pipeline` that writes a run.

A pipeline is a recipe (:class:`curate.recipes.recipe.Recipe`) built in code or loaded from
YAML; :meth:`Pipeline.run` executes it with the same library stages as the CLI and the
flows, into a run directory with the books kept (in = kept + rejected, every reject with its
stage and reason). A rerun of the same pipeline over the same inputs is up to date and
writes nothing. No Prefect here: the flows wrap these same stages in tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from curate.recipes.recipe import Recipe
    from curate.run.directory import RunDir
    from curate.stages.result import StageResult


def ingest(*sources: str, **options: Any) -> pl.DataFrame:
    """The records of ``sources`` (registry names, files or folders) in the record model.

    ``options`` are :class:`curate.io.ingest.IngestOptions` fields (``format``, ``text_field``...);
    bad rows are dropped here with their reasons counted: use :class:`Pipeline` to keep them.
    """
    import polars as pl

    from curate.io.ingest import Ingest, IngestOptions
    from curate.records.schema import empty_records

    frames = [batch for batch, _ in Ingest(list(sources), IngestOptions(**options)).batches()]
    return pl.concat(frames, rechunk=True) if frames else empty_records()


def exact_dedup(records: pl.DataFrame, **normalization: Any) -> StageResult:
    """Exact duplicates on normalized content (``unicode``, ``casefold``, ``collapse_whitespace``)."""
    from curate.dedup.exact import exact_duplicates
    from curate.recipes.recipe import ExactSpec

    return exact_duplicates(records, ExactSpec(**normalization).params())


def near_dedup(records: pl.DataFrame, **params: Any) -> StageResult:
    """MinHash LSH near-duplicates (``threshold`` 0.8, ``ngram``, ``num_perm``... as in recipes);
    clusters are in the annotations."""
    from curate.dedup.near import near_duplicates
    from curate.recipes.recipe import NearSpec

    return near_duplicates(records, NearSpec(**params).params())


def filter(records: pl.DataFrame, use: str, name: str | None = None, **params: Any) -> StageResult:
    """Apply the registered filter ``use`` (see ``curate filters``) with typed ``params``."""
    from curate.stages.filter import run_filter
    from curate.stages.registry import get

    return run_filter(records, get("filter", use)(**params), name or use)


def score(
    records: pl.DataFrame,
    probe: str | None = None,
    embedder: str | None = None,
    helpfulness_probe: str | None = None,
    combine: list[Any] | None = None,
    progress: bool = False,
) -> StageResult:
    """The quality stage's annotations: ``quality_probe``, ``helpfulness_probe``, the label-free signals,
    the combined scores (``quality_score``, ``lima_score``; ``combine``: the recipe's, default
    :data:`curate.recipes.recipe.DEFAULT_COMBINE`) and ``response_tokens``."""
    from curate.recipes.recipe import ScoreSpec
    from scorers.probe import quality_stage

    extra = {"combine": combine} if combine else {}
    spec = ScoreSpec(probe=probe, embedder=embedder, helpfulness_probe=helpfulness_probe, **extra)
    return quality_stage(records, spec, progress)


def select(
    records: pl.DataFrame,
    strategy: str,
    n: int | None = None,
    scores: pl.DataFrame | None = None,
    vectors: Any = None,
    **params: Any,
) -> StageResult:
    """Choose a subset (threshold, top_k, random, longest, diverse, kcenter); ``scores`` is
    ``id`` plus the ``by`` column, ``vectors`` one row per record for the diversity strategies."""
    from curate.selection.strategies import SelectParams
    from curate.selection.strategies import select as choose

    return choose(records, SelectParams(strategy=strategy, n=n, **params), scores=scores, vectors=vectors)


def open_run(path: str | Path) -> RunDir:
    """A run directory: its manifest, kept records, rejects and annotations."""
    from curate.run.directory import RunDir

    return RunDir(path)


def card(run: str | Path) -> Path:
    """(Re)write the run's Hugging Face dataset card, ``RUN/README.md``, with its figures."""
    from dataset_cards.card import write_card

    return write_card(run)


def train(run: str | Path, out: str | Path, device: str | None = None, **config: Any) -> Any:
    """Train a LoRA adapter on a run's records (``config``: :class:`curate.training.trainer.TrainConfig`)."""
    from curate.training.trainer import TrainConfig
    from curate.training.trainer import train as fit

    return fit(run, out, TrainConfig(**config), device=device, progress=False)


def ablate(spec: str | Path, out: str | Path, seeds: list[int] | None = None, device: str | None = None) -> dict:
    """A fixed-model ablation from a spec YAML or a preset name (``ci``, ``cpu``, ``full``); returns its summary."""
    from curate.training.ablate import PRESETS, load_spec, preset, run_ablation, with_seeds

    loaded = preset(str(spec)) if str(spec) in PRESETS else load_spec(spec)
    return run_ablation(with_seeds(loaded, seeds), Path(out), progress=False, device=device, run_recipe=recipe_arm)


def recipe_arm(recipe: str, source: str, n: int, out: Path, progress: bool = True) -> Path:
    """An ablation arm made by a recipe: its stages (dedup, filters, score) on ``source`` (a run
    directory) into a pool shared by the recipe's arms, then its ``select`` (or, with
    ``recipe: NAME:SELECTION``, the selection of that name) sized ``n``. So the arm follows
    whatever the recipe curates."""
    from curate.errors import CurateError
    from curate.recipes.recipe import Recipe
    from curate.training.ablate import PRESET_DIR

    name, _, selection = recipe.partition(":")
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    loaded = Pipeline.from_recipe(path).recipe
    choices = {s.name: s for s in [*([loaded.select] if loaded.select else []), *loaded.selections]}
    spec = choices.get(selection) if selection else loaded.select
    if spec is None:
        wanted = f"selection named {selection!r}" if selection else "select: stage"
        raise CurateError(f"recipe {path} has no {wanted} to size an ablation arm with (it has {sorted(choices)})")
    stages = loaded.model_copy(update={"select": None, "selections": []})
    pool = Pipeline(f"{path.stem}-pool", stages).run(source, out=out.parent / f"pool-{path.stem}", progress=progress)
    chosen = Recipe(name=f"{path.stem}-{spec.name}", select=spec.model_copy(update={"n": n}))
    return Pipeline(chosen.name, chosen).run(str(pool.out), out=out, progress=progress).out


@dataclass
class RunResult:
    """What :meth:`Pipeline.run` wrote: the run directory, its manifest and its card."""

    out: Path
    manifest: dict[str, Any]
    card: Path
    up_to_date: bool = False

    @property
    def kept(self) -> int:
        return self.manifest["records"]["kept"]

    def __str__(self) -> str:
        from curate.run.funnel import summary

        note = " (up to date: nothing to do)" if self.up_to_date else ""
        return f"{summary(self.manifest, str(self.out))}{note}\n  card: {self.card}"


class Pipeline:
    """Stages in order, built fluently (or from a recipe YAML) and run into a run directory."""

    def __init__(self, name: str = "pipeline", recipe: Recipe | None = None) -> None:
        from curate.recipes.recipe import Recipe

        self.recipe = recipe or Recipe(name=name)

    @classmethod
    def from_recipe(cls, path: str | Path) -> Pipeline:
        from curate.recipes.recipe import load_recipe

        recipe = load_recipe(path)
        return cls(recipe.name or Path(path).stem, recipe)

    def _update(self, **changes: Any) -> Pipeline:
        return Pipeline(self.recipe.name or "pipeline", self.recipe.model_copy(update=changes))

    def dedup(self, exact: bool = True, near: bool = True, **near_params: Any) -> Pipeline:
        from curate.recipes.recipe import DedupSpec, ExactSpec, NearSpec

        spec = DedupSpec(exact=ExactSpec() if exact else None, near=NearSpec(**near_params) if near else None)
        return self._update(dedup=spec)

    def filter(self, use: str, name: str | None = None, **params: Any) -> Pipeline:
        from curate.recipes.recipe import FilterSpec

        return self._update(filters=[*self.recipe.filters, FilterSpec(use=use, name=name, params=params)])

    def score(self, probe: str | None = None, embedder: str | None = None, **spec: Any) -> Pipeline:
        """The quality stage; ``spec``: the other :class:`curate.recipes.recipe.ScoreSpec` keys (combine, ...)."""
        from curate.recipes.recipe import ScoreSpec

        return self._update(score=ScoreSpec(probe=probe, embedder=embedder, **spec))

    def select(self, strategy: str, n: int | None = None, name: str = "selection", **params: Any) -> Pipeline:
        from curate.recipes.recipe import SelectSpec

        return self._update(select=SelectSpec(name=name, strategy=strategy, n=n, **params))

    def run(
        self, *sources: str, out: str | Path, overwrite: bool = False, progress: bool = True, **ingest_options: Any
    ) -> RunResult:
        """Ingest ``sources``, run every stage and export shards, manifest, rejects, annotations and card.

        ``out`` must be new, empty or an earlier curate run; replacing a run of other inputs or
        stages needs ``overwrite=True``."""
        from curate.io.ingest import IngestOptions
        from curate.run.directory import RunDir
        from curate.run.pipeline import RunWriter, UpToDate

        options = IngestOptions(**ingest_options)
        plan = {"input": list(sources), "ingest": options.params(), "recipe": self.recipe.model_dump()}
        writer = RunWriter(out, "pipeline", plan, overwrite=overwrite)
        try:
            records = writer.open_input(list(sources), options, progress=progress)
        except UpToDate:
            return RunResult(Path(out), RunDir(out).manifest(), Path(out) / "README.md", up_to_date=True)
        for stage in self._stages(writer, progress):
            records = writer.add(stage(records))
        manifest = writer.finish(records)
        return RunResult(Path(out), manifest, card(out))

    def _stages(self, writer: Any, progress: bool) -> list[Any]:
        """One callable a stage (records -> StageResult), in the recipe's order."""
        r = self.recipe
        stages: list[Any] = []
        if r.dedup and r.dedup.exact:
            stages.append(lambda x: exact_dedup(x, **r.dedup.exact.model_dump()))
        if r.dedup and r.dedup.near:
            stages.append(lambda x: near_dedup(x, **r.dedup.near.model_dump()))
        for step in r.filters:
            stages.append(lambda x, s=step: filter(x, s.use, s.name, **s.params))
        if r.score:
            from scorers.probe import quality_stage

            stages.append(lambda x: quality_stage(x, r.score, progress))
        if r.select:
            stages.append(lambda x: self._select(writer, x))
        return stages

    def _select(self, writer: Any, records: pl.DataFrame) -> StageResult:
        from curate.selection.strategies import select as choose
        from curate.selection.strategies import selection_vectors, stored_scores

        spec = self.recipe.select
        params = spec.params()
        scores = stored_scores(spec.by, writer.annotation_column)
        embedder = self.recipe.score.embedder if self.recipe.score else None
        vectors = selection_vectors(records, params, scores, embedder)
        return choose(records, params, scores=scores, vectors=vectors)
