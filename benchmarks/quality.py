"""Quality benchmark: how well the judge probes predict each judge, what the recipe's selections are
worth on both judges (nested cross-validation), and what the quality stage costs.

* Probe quality, per judge (AlpaGasus accuracy: Claude; AlpaGasus helpfulness: ChatGPT), on the shared
  20 % of labels (10,400 Alpaca rows): 5-fold cross-validated ROC AUC and precision in the top 10 %,
  beside response length alone and a random score; and whether ``curate probe train`` reproduces the
  shipped probes (bit for bit on the machine that trained them, ``shipped_probes_bit_identical``;
  asserted: their logits on the labelled rows correlate at 0.999 or more, as another CPU's floating point
  moves where L-BFGS stops).
* Probe CV metrics are nested: each fold's probe chooses its own C on its training rows only.
* Selections, nested: outer folds split the labelled rows. For outer fold k, the combined score's weights
  (and, for the 9k, its response-length floor: :func:`scorers.probe.choose_weights_and_floor`) are chosen
  on the out-of-fold logits of the *other* labelled rows;
  fold k's rows are scored by probes that never saw their labels (5-fold out-of-fold logits), every
  unlabelled row by the shipped probes. The recipe's strategy then selects from the whole 52k pool
  (top 9,000 by the 9k score; quality-weighted k-center greedy 1,000 of the best ``candidates`` by the
  LIMA score), and only fold k's labelled rows inside the selection count. Lift = positive rate inside
  the selections, summed over folds, over the base rate of all labelled rows.
  (The out-of-fold logits that choose fold k's weights come from probes that saw fold k's labels; the
  weights never do, nor do the probes that score fold k.)
* Cost: ``quality_stage_seconds``, the recipe's quality stage (both probes, every signal, the combined
  scores, response tokens) over all 52,002 records, cold, with an isolated empty cache; and the
  embeddings the LIMA-style k-center needs for its candidates, cold.

Usage: ``python benchmarks/quality.py [--skip-judge]``; the last line is one JSON object
(``benchmarks/targets.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CURATE_DATA_DIR", str(ROOT.parent / "shared" / "data"))

JUDGES = {"accuracy": "alpagasus-claude-sample", "helpfulness": "alpagasus-helpfulness-sample"}
COLUMNS = {"accuracy": "quality_probe", "helpfulness": "helpfulness_probe"}
REPRODUCED_CORRELATION = 0.999  # a retrained probe's logits against the shipped probe's, labelled rows


def _auc_p10(y, p):
    import numpy as np
    from sklearn.metrics import roc_auc_score

    top = np.argsort(-p, kind="stable")[: len(y) // 10]
    return round(float(roc_auc_score(y, p)), 4), round(float(y[top].mean()), 4)


def _selection_spec(recipe, name):
    if recipe.select is not None and recipe.select.name == name:
        return recipe.select
    return next(s for s in recipe.selections if s.name == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-judge", action="store_true", help="do not measure the LLM judge")
    parser.add_argument("--folds", type=int, default=5, help="outer folds of the nested selection check")
    args = parser.parse_args()

    import numpy as np
    import polars as pl
    from sklearn.model_selection import StratifiedKFold

    from curate.embed.encoder import Embedder, EmbeddingCache
    from curate.embed.pairs import pair_vectors, record_vectors
    from curate.io.ingest import Ingest, IngestOptions
    from curate.recipes.recipe import load_recipe
    from curate.selection.strategies import SelectParams, median_guarded, response_words, select
    from scorers.probe import (
        FEATURES,
        agreeing_labels,
        choose_weights,
        choose_weights_and_floor,
        combined_score,
        cross_validated_logits,
        label_path,
        label_sha256,
        load_probes,
        probe_stage,
        train,
    )
    from scorers.signals import SCALARS, failed_checks, signal_columns, signals

    recipe = load_recipe(ROOT / "curate" / "recipes" / "curate-alpaca.yaml")
    combine = {c.name: c for c in recipe.score.combine}
    main_spec, lima_spec = recipe.select, _selection_spec(recipe, "lima-1k")
    main_combine, lima_combine = combine[main_spec.by], combine[lima_spec.by]
    # The 9k's length guard: the selection keeps its median (top_k min_median_ratio), or the floor is
    # chosen among those whose top keeps it.
    median_ratio = main_spec.min_median_ratio or 0.75
    pick9 = None
    if main_spec.min_median_ratio is not None:

        def pick9(order, rows_words, n):
            return median_guarded(order, rows_words, n, main_spec.min_median_ratio)

    records = pl.concat([batch[0] for batch in Ingest(["alpaca"], IngestOptions()).batches()])
    paths = {judge: label_path(name) for judge, name in JUDGES.items()}
    labels = agreeing_labels(paths)
    pool_rows = records.select("source_id").with_row_index("pos")
    aligned = pool_rows.join(labels["accuracy"].rename({"label": "accuracy"}), on="source_id", how="inner")
    aligned = aligned.join(labels["helpfulness"].rename({"label": "helpfulness"}), on="source_id", how="inner")
    idx = aligned["pos"].to_numpy()
    y = {judge: aligned[judge].cast(pl.Int64).to_numpy() for judge in JUDGES}
    print(f"signals of {records.height:,} records; {len(idx):,} labelled by both judges")
    scalars, hashed = signals(records)
    words = response_words(records).to_numpy()
    failed = failed_checks(signal_columns(records, scalars))
    exclude9 = failed if main_combine.exclude_failed_checks else np.zeros(len(failed), dtype=bool)
    exclude1 = failed if lima_combine.exclude_failed_checks else np.zeros(len(failed), dtype=bool)
    shipped = load_probes()

    figures: dict = {"labels": len(idx)}
    oof: dict = {}
    reproduced, bit_identical, largest_difference, correlation = {}, {}, {}, {}
    rng = np.random.default_rng(0)
    labelled = scalars[idx], hashed[idx]
    for judge in JUDGES:
        probe = shipped[COLUMNS[judge]]
        print(f"cross-validating the {judge} probe (C chosen inside each fold)")
        oof[judge] = cross_validated_logits(*labelled, y[judge])
        retrained = train(*labelled, y[judge], probe.model, label_sha256(paths[judge]), cv_logits=oof[judge])
        shipped_weights = probe.weights.astype("<f4")
        bit_identical[judge] = retrained.weights.tobytes() == shipped_weights.tobytes()
        largest_difference[judge] = float(np.abs(retrained.weights.astype(np.float64) - shipped_weights).max())
        # Bit for bit on the machine that trained them. On another CPU the solver's floating point
        # rounds differently and L-BFGS stops (at its tolerance) a little elsewhere: the same ranking,
        # not the same bytes. The check: the retrained probe's logits on the labelled rows correlate.
        agreement = np.corrcoef(retrained.logits(*labelled), probe.logits(*labelled))[0, 1]
        correlation[judge] = round(float(agreement), 6)
        reproduced[judge] = correlation[judge] >= REPRODUCED_CORRELATION
        auc, p10 = _auc_p10(y[judge], oof[judge])
        length_auc, length_p10 = _auc_p10(y[judge], scalars[idx, SCALARS.index("log_words_output")])
        random_auc, random_p10 = _auc_p10(y[judge], rng.random(len(idx)))
        base = float(y[judge].mean())
        figures[judge] = {
            "positives": int(y[judge].sum()),
            "base_rate": round(base, 4),
            "cv_auc": auc,
            "precision_top10pct": p10,
            "precision_over_base_rate": round(p10 / base, 2),
            "baselines": {
                "response_length": {"auc": length_auc, "precision_top10pct": length_p10},
                "random": {"auc": random_auc, "precision_top10pct": random_p10},
            },
        }
        figures[f"cv_auc_{judge}"] = auc
    acc = figures["accuracy"]
    figures.update(
        {
            "positives": acc["positives"],
            "base_rate": acc["base_rate"],
            "cv_auc": acc["cv_auc"],
            "precision_top10pct": acc["precision_top10pct"],
            "precision_over_base_rate": acc["precision_over_base_rate"],
            "length_only_auc": acc["baselines"]["response_length"]["auc"],
            "baselines": acc["baselines"],
            "embedders": {
                f"{FEATURES} (no embedder)": {"cv_auc": acc["cv_auc"], "precision_top10pct": acc["precision_top10pct"]}
            },
            "shipped_probe_reproduced": all(reproduced.values()),
            "shipped_probes_reproduced": reproduced,
            "shipped_probes_bit_identical": bit_identical,
            "shipped_probes_max_weight_difference": largest_difference,
            "shipped_probes_logit_correlation": correlation,
            "shipped_probes_reproduced_at": REPRODUCED_CORRELATION,
        }
    )

    # Pool logits: shipped probes for unlabelled rows, out-of-fold logits for labelled ones.
    z = {}
    for judge in JUDGES:
        probe = shipped[COLUMNS[judge]]
        logits = probe.logits(scalars, hashed)
        logits[idx] = oof[judge]
        z[COLUMNS[judge]] = probe.standardized(logits)
    oof_by_column = {COLUMNS[j]: oof[j] for j in JUDGES}
    y_by_column = {COLUMNS[j]: y[j] for j in JUDGES}
    lab_words = words[idx]
    pool = records.height
    main_fraction = main_spec.n / pool
    lima_fraction = (lima_spec.candidates or lima_spec.n) / pool
    lima_aim = {"helpfulness_probe": 2.5}

    outer = StratifiedKFold(args.folds, shuffle=True, random_state=1)
    strata = y["accuracy"] * 2 + y["helpfulness"]
    counts = {name: {judge: [0, 0] for judge in JUDGES} for name in ("sel9k", "lima1k")}
    chosen_weights = {"sel9k": [], "lima1k": []}
    medians = []
    folds = []
    for rest, held in outer.split(idx, strata):
        rest_logits = {c: v[rest] for c, v in oof_by_column.items()}
        rest_y = {c: v[rest] for c, v in y_by_column.items()}
        rest_rows = idx[rest]
        w9, floor9 = choose_weights_and_floor(
            rest_logits,
            rest_y,
            main_fraction,
            lab_words[rest],
            min_median_ratio=median_ratio,
            pick=pick9,
            exclude=exclude9[rest_rows],
        )
        w1 = choose_weights(
            rest_logits,
            rest_y,
            lima_fraction,
            lab_words[rest],
            lima_combine.min_response_words,
            aim=lima_aim,
            exclude=exclude1[rest_rows],
        )
        chosen_weights["sel9k"].append({**w9, "min_response_words": floor9})
        chosen_weights["lima1k"].append(w1)
        folds.append((held, w9, floor9, w1))
    # Embeddings for every fold's LIMA candidates (cached under the default cache; cold on a first run).
    candidate_sets = []
    for _, _, _, w1 in folds:
        score = combined_score(z, w1, words, lima_combine.min_response_words, exclude=exclude1)
        filled = np.nan_to_num(score, nan=-np.inf)
        candidate_sets.append(np.argsort(-filled, kind="stable")[: lima_spec.candidates])
    union = np.unique(np.concatenate(candidate_sets))
    embedder = Embedder()
    cache = EmbeddingCache(EmbeddingCache.default_root(), embedder.key(), embedder.dimension)
    print(f"embedding {union.size:,} LIMA candidates (prompt and response)")
    vectors = np.zeros((pool, embedder.dimension), dtype=np.float32)
    vectors[union] = record_vectors(*pair_vectors(records[union], embedder, cache, progress=True))
    for held, w9, floor9, w1 in folds:
        held_positions = idx[held]
        for name, weights, spec, floor, exclude in (
            ("sel9k", w9, main_spec, floor9, exclude9),
            ("lima1k", w1, lima_spec, lima_combine.min_response_words, exclude1),
        ):
            score = combined_score(z, weights, words, floor, exclude=exclude)
            scores = pl.DataFrame({"id": records["id"], "s": pl.Series(score, nan_to_null=True)})
            params = SelectParams(**{**spec.params().as_dict(), "by": "s"})
            result = select(records, params, scores=scores, vectors=vectors if params.candidates else None)
            chosen = np.zeros(pool, dtype=bool)
            chosen[np.flatnonzero(result.annotations["selected"].to_numpy())] = True
            inside = chosen[held_positions]
            for judge in JUDGES:
                counts[name][judge][0] += int(y[judge][held][inside].sum())
                counts[name][judge][1] += int(inside.sum())
            if name == "sel9k":
                medians.append(float(np.median(words[chosen])))
    for name in counts:
        for judge in JUDGES:
            positives, labelled = counts[name][judge]
            rate = positives / max(labelled, 1)
            figures[f"{name}_{judge}_lift"] = round(rate / float(y[judge].mean()), 2)
        figures[f"{name}_labelled_rows_selected"] = counts[name]["accuracy"][1]
    figures["sel9k_median_response_words"] = float(np.median(medians))
    figures["pool_median_response_words"] = float(np.median(words))
    figures["nested_chosen_weights"] = chosen_weights
    all_logits = dict(oof_by_column)
    weights9, floor9 = choose_weights_and_floor(
        all_logits,
        y_by_column,
        main_fraction,
        lab_words,
        min_median_ratio=median_ratio,
        pick=pick9,
        exclude=exclude9[idx],
    )
    figures["weights_chosen_on_all_labels"] = {
        "quality_score": {**weights9, "min_response_words": floor9},
        "lima_score": choose_weights(
            all_logits,
            y_by_column,
            lima_fraction,
            lab_words,
            lima_combine.min_response_words,
            aim=lima_aim,
            exclude=exclude1[idx],
        ),
    }
    figures["sel9k_min_median_ratio"] = main_spec.min_median_ratio
    figures["excluded_failed_checks"] = int(failed.sum())
    figures["recipe_weights"] = {
        name: {**spec.weights, "min_response_words": spec.min_response_words} for name, spec in combine.items()
    }

    # Cost: the quality stage over the whole pool, cold (an isolated empty cache; a fresh embedder for tokens).
    with tempfile.TemporaryDirectory() as cold_root:
        os.environ["CURATE_EMBED_CACHE"] = cold_root
        started = time.perf_counter()
        stage = probe_stage(records, load_probes(recipe.score.probe_paths()), recipe.score.combine, Embedder())
        figures["quality_stage_seconds"] = round(time.perf_counter() - started, 1)
        cold_cache = EmbeddingCache(cold_root, embedder.key(), embedder.dimension)
        started = time.perf_counter()
        pair_vectors(records[candidate_sets[0]], embedder, cold_cache)
        figures["lima_candidates_embed_seconds"] = round(time.perf_counter() - started, 1)
    figures["probe_records_per_s"] = round(records.height / figures["quality_stage_seconds"], 1)
    figures["probe_records_per_s_cached"] = figures["probe_records_per_s"]  # the probes read no cache now
    figures["probe_device"] = "cpu"
    figures["quality_stage_degenerate"] = stage.stats["degenerate"]
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    figures["cpus"] = os.cpu_count()

    judge_seconds = None
    bench = ROOT / "benchmarks" / "judge.py"
    if not args.skip_judge and bench.exists():
        done = subprocess.run([sys.executable, str(bench)], capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            judge_seconds = json.loads(lines[-1]).get("judge_seconds_per_record")
        else:
            print(f"judge benchmark failed: {done.stderr[-500:]}", file=sys.stderr)
    figures["judge_seconds_per_record"] = judge_seconds
    if judge_seconds:
        figures["probe_speedup_vs_judge"] = round(judge_seconds * figures["probe_records_per_s"], 1)

    from benchmarks.targets import finish, target

    targets = {
        "sel9k_accuracy_lift": target(figures["sel9k_accuracy_lift"], ">=", 1.5),
        "sel9k_helpfulness_lift": target(figures["sel9k_helpfulness_lift"], ">=", 1.5),
        "lima1k_helpfulness_lift": target(figures["lima1k_helpfulness_lift"], ">=", 2.5),
        "lima1k_accuracy_lift": target(figures["lima1k_accuracy_lift"], ">=", 1.0),
        "sel9k_median_over_pool": target(
            round(figures["sel9k_median_response_words"] / figures["pool_median_response_words"], 3), ">=", 0.75
        ),
        "stretch_sel9k_both_lifts_2": target(
            min(figures["sel9k_accuracy_lift"], figures["sel9k_helpfulness_lift"]), ">=", 2.0
        ),
        "stretch_cv_auc_accuracy": target(figures["cv_auc_accuracy"], ">=", 0.75),
        "quality_stage_seconds": target(figures["quality_stage_seconds"], "<", 120),
    }
    checks = {
        "shipped_probes_reproduced": figures["shipped_probe_reproduced"],
        "probes_beat_random": all(figures[f"cv_auc_{j}"] > figures[j]["baselines"]["random"]["auc"] for j in JUDGES),
    }
    finish(figures, targets, checks)


if __name__ == "__main__":
    main()
