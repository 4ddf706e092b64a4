"""Every run directory documents itself: ``RUN/README.md`` in the Hugging Face card format.

The card is built from the run's own records (manifest, shards, rejects, annotations) and
nothing else, so every number in it can be traced to a file. Regenerating it from the same
run gives the same bytes. Figures go to ``RUN/figures/``; drawing them (matplotlib) costs
seconds, more than a fast stage itself, so stage commands write the card without them and
``curate card``, the API's ``card()`` and the end of a flow draw them.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import polars as pl
import yaml

from curate.io import catalog
from curate.io.atomic import write_bytes
from curate.run.directory import RunDir

CITATIONS = {
    "alpaca": "@misc{alpaca,\n  author = {Rohan Taori and Ishaan Gulrajani and Tianyi Zhang and Yann Dubois "
    "and Xuechen Li and Carlos Guestrin and Percy Liang and Tatsunori B. Hashimoto},\n  title = {Stanford Alpaca: An "
    "Instruction-following LLaMA model},\n  year = {2023},\n  howpublished = "
    "{\\url{https://github.com/tatsu-lab/stanford_alpaca}}\n}",
    "alpagasus": "@inproceedings{chen2024alpagasus,\n  title = {AlpaGasus: Training a Better Alpaca with Fewer Data},\n"
    "  author = {Lichang Chen and others},\n  booktitle = {ICLR},\n  year = {2024}\n}",
    "lima": "@inproceedings{zhou2023lima,\n  title = {LIMA: Less Is More for Alignment},\n"
    "  author = {Chunting Zhou and others},\n  booktitle = {NeurIPS},\n  year = {2023}\n}",
    "self-instruct": "@inproceedings{wang2023selfinstruct,\n  title = {Self-Instruct: Aligning Language Models with "
    "Self-Generated Instructions},\n  author = {Yizhong Wang and others},\n  booktitle = {ACL},\n  year = {2023}\n}",
}
_DATASET_CITATIONS = {
    "alpaca": ["alpaca"],
    "alpaca-eval": ["alpaca"],
    "alpaca-seed-tasks": ["self-instruct"],
    "lima": ["lima"],
}
_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]
_LIST_FEATURES = {"messages": [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]}


def size_category(n: int) -> str:
    return next((label for bound, label in _SIZE_CATEGORIES if n < bound), "n>100M")


def _distinct(frame: pl.LazyFrame, column: str) -> list[Any]:
    return sorted(frame.select(pl.col(column).drop_nulls().unique()).collect()[column].to_list())


def _licenses(manifest: dict[str, Any], kept: pl.LazyFrame) -> tuple[list[str], str | None]:
    found = _distinct(kept, "license")
    if not found:
        found = sorted(
            {
                catalog.lookup(i.get("dataset", "")).license
                for i in manifest["inputs"]
                if catalog.lookup(i.get("dataset", ""))
            }
            or {"unknown"}
        )
    warning = None
    if len(found) > 1:
        warning = (
            "The sources carry different licences (" + ", ".join(found) + "); the most restrictive terms "
            "apply to the combined set. Check compatibility before redistribution."
        )
    return found, warning


def _stage_files(run: RunDir, manifest: dict[str, Any], key: str) -> dict[str, Path]:
    return {s["name"]: run.root / s[key] for s in manifest["stages"] if s.get(key)}


def _example(records: pl.DataFrame) -> dict[str, Any]:
    row = records.row(0, named=True) if records.height else {}
    return {k: (v[:300] + "…" if isinstance(v, str) and len(v) > 300 else v) for k, v in row.items()}


def _word_counts(frame: pl.LazyFrame, field: str) -> np.ndarray:
    words = frame.select(pl.col(field).fill_null("").str.count_matches(r"\S+")).collect()
    return words[field].to_numpy().astype(float)


FIGURE_FILES = ("funnel.png", "lengths.png", "clusters.png")


def build(run: RunDir, draw: bool = True) -> tuple[str, dict[str, Any]]:
    """The card's text and the facts it was made from; ``draw`` renders ``RUN/figures/`` too."""
    from curate.records.schema import RECORD_SCHEMA, conform

    manifest = run.manifest()
    # The kept records and the rejects are scanned, column by column, never held whole: a card of a
    # pretraining run of millions of records needs counts, distinct values and a few rows, not the corpus.
    kept = pl.scan_parquet(run.data_files())
    example = conform(kept.head(1).collect(), RECORD_SCHEMA)
    rows = int(kept.select(pl.len()).collect().item())
    name = manifest.get("name") or PurePosixPath(run.location).name  # a staged run's folder is not its name
    rejects = {
        stage: pl.scan_parquet(path) for stage, path in _stage_files(run, manifest, "rejects").items() if path.exists()
    }
    annotations = _stage_files(run, manifest, "annotations")
    licenses, licence_warning = _licenses(manifest, kept)
    kinds = _distinct(kept, "kind")
    datasets = sorted({i.get("dataset") or i["source"] for i in manifest["inputs"]})

    languages: dict[str, int] = {}
    if "language" in annotations and annotations["language"].exists():
        lang = pl.scan_parquet(annotations["language"]).select("id", "language")
        kept_lang = kept.select("id").join(lang, on="id", how="left").select(pl.col("language").fill_null("und"))
        counts = kept_lang.group_by("language").len().collect()
        languages = dict(sorted(counts.iter_rows(), key=lambda r: (-r[1], r[0])))
    language_codes = [code for code, n in languages.items() if code != "und" and n >= 0.01 * max(1, rows)]

    field = "output" if "instruction" in kinds else "text"
    if draw:
        from dataset_cards import figures

        figures_dir = run.root / "figures"
        figures.funnel(manifest["stages"], figures_dir / "funnel.png")
        kept_words = _word_counts(kept, field)
        before = np.concatenate([kept_words] + [_word_counts(r, field) for s, r in rejects.items() if s != "ingest"])
        figures.histograms(
            {"before curation": before, "kept": kept_words},
            figures_dir / "lengths.png",
            f"Length of `{field}` in words, before and after curation",
            "words (log scale)",
        )
    else:
        for name in FIGURE_FILES:  # figures of an earlier state of this run would not match its card
            (run.root / "figures" / name).unlink(missing_ok=True)
    shown_figures = ["funnel.png", "lengths.png"]

    clusters = None
    near = annotations.get("near_dup")
    if near is not None and near.exists():
        ann = pl.scan_parquet(near)
        if "cluster_size" in ann.collect_schema().names():
            # Only the members of clusters of two or more: the same sizes, without a group per record.
            ann = ann.filter(pl.col("cluster_size") > 1)
        sizes = ann.group_by("cluster_id").agg(pl.len().alias("size")).filter(pl.col("size") > 1).collect()
        if sizes.height:
            largest = sizes.sort(["size", "cluster_id"], descending=[True, False]).row(0, named=True)
            rep = (
                rejects["near_dup"].filter(pl.col("duplicate_of") == largest["cluster_id"]).head(1).collect()
                if "near_dup" in rejects
                else pl.DataFrame()
            )
            if draw:
                buckets = sizes.with_columns(pl.col("size").clip(upper_bound=10)).group_by("size").len().sort("size")
                labels = [f"{s}" if s < 10 else "10+" for s in buckets["size"].to_list()]
                figures.bars(
                    labels,
                    buckets["len"].to_list(),
                    figures_dir / "clusters.png",
                    "Near-duplicate clusters by size",
                    "clusters",
                )
            shown_figures.append("clusters.png")
            kept_text = kept.filter(pl.col("id") == largest["cluster_id"]).select("text").collect()["text"]
            clusters = {
                "count": sizes.height,
                "records_in_clusters": int(sizes["size"].sum()),
                "largest_size": largest["size"],
                "largest_id": largest["cluster_id"],
                "largest_text": (kept_text[0] if kept_text.len() else (rep["text"][0] if rep.height else "")),
            }

    pii = None
    if "pii" in annotations and annotations["pii"].exists():
        ann = pl.scan_parquet(annotations["pii"])
        present = ann.collect_schema().names()
        wanted = [c for c in ("pii_emails", "pii_phones", "pii_ips", "pii_found") if c in present]
        sums = ann.select(pl.col(c).cast(pl.Int64).sum() for c in wanted).collect().row(0, named=True) if wanted else {}
        counts = {c: int(sums[c]) for c in ("pii_emails", "pii_phones", "pii_ips") if c in sums}
        stage = next(s for s in manifest["stages"] if s["name"] == "pii")
        pii = {
            "counts": counts,
            "records": int(sums["pii_found"]) if "pii_found" in sums else None,
            "params": stage["params"],
        }

    data_files = manifest["outputs"]["data"]
    num_bytes = int(sum(f["bytes"] for f in data_files))
    facts = {
        "name": name,
        "rows": rows,
        "licenses": licenses,
        "languages": languages,
        "language_codes": language_codes,
        "datasets": datasets,
        "clusters": clusters,
        "pii": pii,
        "figures": shown_figures if draw else [],
        "bytes": num_bytes,
    }
    metadata = {
        "pretty_name": f"{name} (curated with curate)",
        "license": licenses[0] if len(licenses) == 1 else licenses,
        "language": language_codes or None,
        "task_categories": ["text-generation"],
        "size_categories": [size_category(rows)],
        "source_datasets": [f"extended|{d}" for d in datasets],
        "tags": [
            "curate",
            "data-curation",
            "deduplicated",
            *(["instruction-tuning"] if "instruction" in kinds else []),
        ],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        "dataset_info": {
            "features": [
                {"name": c, "list": _LIST_FEATURES[c]} if c in _LIST_FEATURES else {"name": c, "dtype": "string"}
                for c in example.columns
            ],
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": rows}],
            "download_size": num_bytes,
            "dataset_size": num_bytes,
        },
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    body = _body(run, manifest, example, rejects, facts, licence_warning, kinds)
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{body}", facts


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _body(
    run: RunDir,
    manifest: dict[str, Any],
    records: pl.DataFrame,
    rejects: dict[str, pl.DataFrame],
    facts: dict[str, Any],
    licence_warning: str | None,
    kinds: list[str],
) -> str:
    from curate.records.schema import RECORD_SCHEMA
    from curate.run.funnel import funnel_table

    stages = manifest["stages"]
    totals = manifest["records"]
    out: list[str] = [f"# {facts['name']}", ""]
    out += [
        "## Dataset summary",
        "",
        f"{totals['kept']:,} records curated from {totals['in']:,} ({', '.join(facts['datasets'])}) by "
        f"curate (`{manifest.get('invocation') or manifest['command']}`): "
        f"{totals['rejected']:,} records were removed, each with its stage and reason (see *Curation*). "
        f"Record kinds: {', '.join(kinds) or 'none'}. Licence: {', '.join(facts['licenses'])}.",
        "",
    ]
    out += [
        "## Dataset structure",
        "",
        "One split, `train`, in Parquet shards under `data/` "
        f"({len(manifest['outputs']['data'])} shard(s), {facts['bytes']:,} bytes).",
        "",
        _table(
            ["field", "type", "meaning"],
            [
                ["id", "string", "stable content id (SHA-256 of the normalized content)"],
                ["source / source_id", "string", "dataset name and the record's own id or row number there"],
                ["kind", "string", "`instruction` or `text`"],
                ["instruction / input / output", "string", "the instruction record (`input` may be empty)"],
                ["text", "string", "pretraining text, or the instruction record as one text"],
                ["messages", "list of {role, content}", "the whole conversation for chat sources"],
                ["license / meta", "string", "licence of the source; source-specific fields as JSON"],
            ],
        ),
        "",
        "One record:",
        "",
        "```json",
        json.dumps(_example(records), indent=2, ensure_ascii=False, default=str),
        "```",
        "",
    ]
    assert list(RECORD_SCHEMA) == records.columns
    out += [
        "## Curation rationale",
        "",
        "Data-centric curation: hold the model fixed and change the data. Exact and near duplicates waste "
        "training compute and overweight what is repeated; filters remove records a model should not learn "
        "from (wrong language, placeholders, refusals, tasks a text model cannot do, low-quality text). "
        "Every removed record is kept in `rejects/` with its reason, so the choices can be audited and undone.",
        "",
    ]
    out += ["## Curation: the pipeline as run", ""]
    for stage in stages:
        params = json.dumps(stage["params"], sort_keys=True, default=str)
        out.append(
            f"- **{stage['name']}** ({stage['in']:,} in, {stage['kept']:,} kept, {stage['rejected']:,} "
            f"rejected): `{params}`"
        )
    drawn = set(facts["figures"])
    out += ["", "### Funnel", "", funnel_table(manifest, markdown=True), ""]
    if drawn:
        out += ["![funnel](figures/funnel.png)", "", "### Length distributions", ""]
        out += ["![lengths](figures/lengths.png)", ""]
    else:
        out += ["Figures (funnel, lengths, clusters): `curate card RUN` draws them into `RUN/figures/`.", ""]
    out += _selection_section(manifest)
    if facts["clusters"]:
        c = facts["clusters"]
        text = (c["largest_text"] or "")[:200].replace("\n", " ")
        out += [
            "### Duplicate clusters",
            "",
            f"{c['count']:,} near-duplicate clusters with more than one record ({c['records_in_clusters']:,} "
            f"records); the largest has {c['largest_size']:,} records, represented by `{c['largest_id']}`: "
            f"“{text}”",
            "",
            *(["![clusters](figures/clusters.png)", ""] if "clusters.png" in drawn else []),
        ]
    if facts["languages"]:
        out += [
            "### Language mix",
            "",
            _table(["language", "records"], [[k, f"{v:,}"] for k, v in list(facts["languages"].items())[:15]]),
            "",
        ]
    out += ["### What was removed", ""]
    shown = 0
    for stage, frame in rejects.items():
        for reason in _distinct(frame, "reason")[:8]:
            sample = frame.filter(pl.col("reason") == reason).head(2).collect()
            for row in sample.iter_rows(named=True):
                text = (row["text"] or "")[:160].replace("\n", " ").replace("|", "\\|")
                out.append(f"- `{stage}` / `{reason}`: “{text}” — {row['detail'] or ''}")
                shown += 1
    if not shown:
        out.append("Nothing was removed.")
    out.append("")
    out += ["## Provenance and licensing", ""]
    rows = []
    for entry in manifest["inputs"]:
        ds = catalog.lookup(entry.get("dataset", "")) if entry.get("dataset") else None
        rows.append(
            [
                entry["source"],
                ds.homepage or ds.url if ds else entry["path"],
                ds.license if ds else "see source",
                f"{entry['count']:,}",
                f"`{entry['sha256'][:16]}…`",
            ]
        )
    out += [_table(["source", "upstream", "licence", "records read", "sha256"], rows), ""]
    if licence_warning:
        out += [f"**Licence warning.** {licence_warning}", ""]
    out += ["## Personal and sensitive information", ""]
    if facts["pii"]:
        p = facts["pii"]
        out.append(
            f"The `pii` stage looked for e-mail addresses, phone numbers and IP addresses: "
            f"{json.dumps(p['counts'])} in {p['records']} records; parameters {json.dumps(p['params'])} "
            f"({'redacted in the data' if p['params'].get('redact') else 'not redacted'})."
        )
    else:
        out.append(
            "No PII stage was run on this set: it may contain e-mail addresses, phone numbers or other "
            "personal information present in the sources."
        )
    out += [
        "",
        "## Known limitations and biases",
        "",
        "- Filters and dedup are heuristics: they miss some duplicates and low-quality records and remove some "
        "good ones; the rejects are there to check.",
        "- The set inherits the biases and errors of its sources (for Alpaca: outputs generated by "
        "text-davinci-003, with known factual errors).",
        "- Language detection is unreliable on very short texts (those are marked `und`, not guessed).",
        "",
    ]
    out += [
        "## How to reproduce",
        "",
        "```bash",
        f"{reproduce_command(manifest, run.location)}  # see manifest.json for every parameter",
        "```",
        "",
        f"- curate commit: `{manifest.get('git_commit')}`; run fingerprint `{manifest.get('fingerprint')}`",
        f"- versions: `{json.dumps(manifest['versions'], sort_keys=True)}`",
        "- inputs: " + ", ".join(f"`{i['path']}` (sha256 `{i['sha256']}`)" for i in manifest["inputs"]),
        "",
        "Same inputs, parameters and versions give byte-identical shards (their sha256 are in `manifest.json`).",
        "",
    ]
    out += _ablation_section(run)
    out += [
        "## Datasheet questions",
        "",
        _table(
            ["question (Datasheets for Datasets)", "answer"],
            [
                [
                    "For what purpose was the dataset created?",
                    "Instruction tuning / language-model training, curated for quality (see rationale).",
                ],
                ["What do the instances represent? How many?", f"{totals['kept']:,} {' and '.join(kinds)} records."],
                [
                    "Is any information missing from instances?",
                    "Removed records are in `rejects/`; kept records are complete.",
                ],
                ["Are there recommended splits?", "One `train` split; hold out your own evaluation data."],
                [
                    "Does the dataset contain duplicates or redundancies?",
                    "Exact and near duplicates were removed by the stages listed above, where those stages ran.",
                ],
                ["Does it contain confidential or personal data?", "See *Personal and sensitive information*."],
                [
                    "How was the data collected and preprocessed?",
                    "From the sources listed, by the pipeline listed, with every parameter in `manifest.json`.",
                ],
                [
                    "Who created the sources, and were people compensated or consulted?",
                    "Cannot be answered from the pipeline's records; see the upstream datasets.",
                ],
                [
                    "Was consent obtained from people the data is about?",
                    "Cannot be answered from the pipeline's records.",
                ],
                [
                    "Are there tasks the dataset should not be used for?",
                    "Cannot be decided by the pipeline; check the licence and the upstream cards.",
                ],
                ["Will the dataset be maintained or updated?", "Cannot be answered from the pipeline's records."],
            ],
        ),
        "",
    ]
    cited = sorted({c for d in facts["datasets"] for c in _DATASET_CITATIONS.get(d, [])})
    if cited:
        out += ["## Citation", "", "```bibtex", *(CITATIONS[c] for c in cited), "```", ""]
    return "\n".join(out)


def _quality_lines(params: dict[str, Any]) -> list[str]:
    """The quality stage: each probe's cross-validated metrics, the signals and the combined scores' weights."""
    probes = params.get("probes") or {"quality_probe": {"metrics": params.get("probe_metrics", {})}}
    rows = [
        [
            f"`{column}`",
            p.get("model", ""),
            p["metrics"].get("labels"),
            p["metrics"].get("base_rate"),
            p["metrics"].get("cv_auc"),
            p["metrics"].get("precision_top10pct"),
            p["metrics"].get("length_only_auc"),
        ]
        for column, p in probes.items()
    ]
    out = [
        "Every record that reached the `quality` stage carries, in `annotations/quality.parquet`, one judge-distilled "
        "probe per judge (the probability that the judge rates it 4.5 or more), the label-free signals "
        "`instruction_complexity`, `coherence` (prompt-response word-vector cosine), `degenerate` (a bare number or "
        "word where an explanation was asked for, a copy of the input, or a self-repeating answer), `repetition`, "
        "the verifiable-answer checks (+1 pass, -1 fail, 0 not applicable: `refers_to_missing_input`, "
        "`arithmetic_checked`, `count_constraint`, `choice_constraint`, `code_parses`, `rewrite_copy`) "
        "and `response_tokens`, and the combined scores.",
        "",
        _table(["probe", "judge", "labels", "base rate", "CV ROC AUC", "precision top 10 %", "length-only AUC"], rows),
        "",
    ]
    combine = params.get("combine") or []
    if combine:
        out += [
            "Combined scores (sum of weight x standardized probe logit; null, ranked last, under the length floor "
            "and, where marked, for records that fail a label-free check: degenerate answers, missing input, wrong "
            "arithmetic, counts or choices, Python that does not parse, unchanged rewrites). "
            "The weights are recipe parameters chosen by nested cross-validation on the shared labels:",
            "",
            _table(
                ["score", "weights", "min response words", "failed checks excluded"],
                [
                    [
                        f"`{c['name']}`",
                        ", ".join(f"{k} {v}" for k, v in c["weights"].items()),
                        c["min_response_words"],
                        "yes" if c.get("exclude_failed_checks") else "no",
                    ]
                    for c in combine
                ],
            ),
            "",
        ]
    return out


def _selection_section(manifest: dict[str, Any]) -> list[str]:
    """Scores and the selection beside a random selection of the same size (from the stage stats)."""
    stages = {stage["name"]: stage for stage in manifest["stages"]}
    quality = stages.get("quality")
    select = next((s for s in reversed(manifest["stages"]) if s["name"].startswith("select")), None)
    if quality is None and select is None:
        return ["Scores: no quality score has been computed for this set yet.", ""]
    out = ["### Quality scores and selection", ""]
    if quality is not None:
        out += _quality_lines(quality["params"])
    report = (select or {}).get("stats", {}).get("report")
    if select is not None and report:
        params = select["params"]
        how = f"`{params.get('strategy')}`" + (f" by `{params['by']}`" if params.get("by") else "")
        if params.get("candidates"):
            how += f" among the {params['candidates']:,} best"
        if params.get("min_median_ratio"):
            how += f", median response kept at least {params['min_median_ratio']} of the pool's"
        out += [
            f"The `{select['name']}` stage kept {report['selected']:,} of {report['pool']:,} records ({how}); "
            f"beside it, a seeded random selection of the same size from the same pool:",
            "",
        ]
        rows = []
        for label, key in (("response words", "response_words"), ("score", "score")):
            block = report.get(key)
            if not block:
                continue
            for which in ("selected", "random", "pool"):
                q = block[which]
                rows.append([label, which, q["p10"], q["p50"], q["p90"], q["mean"]])
        out += [_table(["", "set", "p10", "median", "p90", "mean"], rows), ""]
        words = report["response_words"]
        selected_median, pool_median = words["selected"]["p50"], words["pool"]["p50"]
        if selected_median is not None and pool_median:
            out += [
                f"Response length: the selection's median is {selected_median:g} words, the pool's "
                f"{pool_median:g} ({selected_median / pool_median:.2f} of it).",
                "",
            ]
        if report.get("warning"):
            out += [f"**Warning**: {report['warning']}.", ""]
        judges = report.get("judges") or ({"judge": report["judge"]} if report.get("judge") else {})
        if judges:
            rows = [
                [
                    name,
                    j["labelled_in_pool"],
                    j["base_rate"],
                    j["labelled_in_selection"],
                    j["positive_rate_in_selection"],
                    j.get("lift"),
                    j["positive_rate_in_random"],
                ]
                for name, j in judges.items()
            ]
            out += [
                "Judge decisions on the shared labelled rows, per judge (**in-sample**: these labels trained the "
                "probes, so the rates inside the selection are optimistic; the nested cross-validated lifts of "
                "`benchmarks/quality.py` are the honest estimate):",
                "",
                _table(
                    [
                        "judge",
                        "labelled in pool",
                        "base rate",
                        "labelled in selection",
                        "rate in selection",
                        "lift",
                        "rate in random",
                    ],
                    rows,
                ),
                "",
            ]
        stats = select.get("stats", {})
        if stats.get("mean_pairwise_cosine") is not None:
            out += [
                f"Diversity: mean pairwise cosine {stats['mean_pairwise_cosine']} (random: "
                f"{stats['random_mean_pairwise_cosine']}); k-means clusters hit {stats['clusters_hit']} of "
                f"{stats['clusters']} (random: {stats['random_clusters_hit']}).",
                "",
            ]
    selections = manifest.get("selections") or {}
    if selections:
        listed = ", ".join(f"`{name}` in `{path}/`" for name, path in sorted(selections.items()))
        out += [f"Other selections from the same scored pool, each its own run directory and card: {listed}.", ""]
    return out


def _ablation_section(run: RunDir) -> list[str]:
    """Fixed-model ablations that trained on this set: ``RUN/ablations/*.json`` (written by ``curate ablate``)."""
    from dataset_cards.ablation import results_markdown

    found = sorted((run.root / "ablations").glob("*.json"))
    out = ["## Ablation results", ""]
    if not found:
        return [*out, "No fixed-model ablation has been run on this set yet.", ""]
    for path in found:
        result = json.loads(path.read_text())
        table = results_markdown(result).split("\n", 2)[2]
        out += [
            f"### Ablation `{result['ablation']}` (this set is arm `{result['arm']}`)",
            "",
            f"Results in `{result['dir']}` (results.json, summary.json, ablation.png).",
            "",
            table,
        ]
    return out


def reproduce_command(manifest: dict[str, Any], location: str) -> str:
    """A command that makes this run again: the recorded CLI invocation where there is one."""
    invocation = manifest.get("invocation") or ""
    if invocation.startswith("curate "):
        return invocation
    command = manifest["command"]
    if "/" in command:  # a selection beside a flow's main line
        return f"{manifest.get('parent', {}).get('run', 'the parent run')}: see its card (this is its {command})"
    if command == "pipeline":
        return "python: curate.Pipeline(...).run(...)  # the stages and their parameters are in manifest.json"
    inputs = [i.get("dataset") or i["path"] for i in manifest.get("inputs", [])]
    return " ".join(["curate", command, *dict.fromkeys(inputs), "--out", location])


def write_card(run_dir: Path | str | RunDir, draw: bool = True) -> Path:
    """Write (or rewrite) ``RUN/README.md`` and, with ``draw``, ``RUN/figures/``; returns the card's path.

    A run staged for a URL is published after its card is written; given the writer's
    :class:`RunDir` (its manifest committed locally, not yet uploaded), the manifest goes up last.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    text, _ = build(run, draw)
    path = run.root / "README.md"
    write_bytes(path, text.encode("utf-8"))
    run.publish()
    return path
