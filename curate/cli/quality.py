"""Scoring and selection: embed, semdedup, select, probe train, score, judge."""

from __future__ import annotations

import argparse

from curate.cli.options import (
    chat_settings,
    done,
    embedder_from,
    embedding_options,
    endpoint_options,
    finish_stage_parser,
    stage_parser,
    start,
)


def _embed_plan(args: argparse.Namespace) -> dict:
    return {"model": args.model, "field": args.field, "max_length": args.max_length, "precision": args.precision}


def cmd_embed(args: argparse.Namespace) -> None:
    from scorers.embedding import embed_stage

    started = start(args, "embed", {"embed": _embed_plan(args)})
    if started is None:
        return
    writer, records = started
    embedder, cache = embedder_from(args)
    result, _ = embed_stage(records, embedder, args.field, cache, progress=not args.quiet)
    print(
        f"embed: {result.stats['encoded']:,} encoded, {result.stats['from_cache']:,} from cache, "
        f"{result.stats['truncated']:,} truncated, on {result.stats['device']} ({result.stats['precision']})"
    )
    done(writer.finish(writer.add(result)), args.out)


def cmd_semdedup(args: argparse.Namespace) -> None:
    from scorers.embedding import embed_stage
    from scorers.semdedup import SemDedupParams, semantic_duplicates

    params = SemDedupParams(threshold=args.threshold, clusters=args.clusters, keep=args.keep, seed=args.seed)
    started = start(args, "semdedup", {"embed": _embed_plan(args), "semdedup": params.as_dict()})
    if started is None:
        return
    writer, records = started
    embedder, cache = embedder_from(args)
    result, vectors = embed_stage(records, embedder, args.field, cache, progress=not args.quiet)
    records = writer.add(result)
    done(writer.finish(writer.add(semantic_duplicates(records, vectors, params))), args.out)


def cmd_select(args: argparse.Namespace) -> None:
    import numpy as np

    from curate.io.shards import frame_vectors
    from curate.selection.strategies import SelectParams, needs_vectors, select, stored_scores

    params = SelectParams(
        strategy=args.strategy,
        n=args.n,
        by=args.by,
        min=args.min,
        seed=args.seed,
        max_cosine=args.max_cosine,
        stratify=args.stratify,
        quota=args.quota,
        candidates=args.candidates,
        min_median_ratio=args.min_median_ratio,
    )
    started = start(args, "select", {"select": params.as_dict()})
    if started is None:
        return
    writer, records = started
    scores = stored_scores(args.by, writer.run.annotation_column)
    vectors = None
    if args.strategy in ("diverse", "kcenter"):
        stored = writer.run.annotation_column("embedding")
        if stored is not None and stored.height >= records.height:
            aligned = records.select("id").join(stored, on="id", how="left", maintain_order="left")
            if aligned["embedding"].null_count() == 0:
                vectors = frame_vectors(aligned, "embedding", np.float32)
        if vectors is None:
            from curate.embed.encoder import embed_records

            embedder, cache = embedder_from(args)
            positions = needs_vectors(records, params, scores)  # with --candidates, only those
            vectors = np.zeros((records.height, embedder.dimension), dtype=np.float32)
            vectors[positions], _ = embed_records(
                records[positions], embedder, args.field, cache, progress=not args.quiet
            )
    result = select(records, params, scores=scores, vectors=vectors)
    if result.stats.get("mean_pairwise_cosine") is not None:
        st = result.stats
        print(
            f"select: mean pairwise cosine {st['mean_pairwise_cosine']} (random: "
            f"{st['random_mean_pairwise_cosine']}), clusters hit {st['clusters_hit']}/{st['clusters']} "
            f"(random: {st['random_clusters_hit']})"
        )
    done(writer.finish(writer.add(result)), args.out)


def cmd_probe_train(args: argparse.Namespace) -> None:
    import polars as pl

    from curate.io.ingest import Ingest, IngestOptions
    from scorers.probe import DEFAULT_PROBE, agreeing_labels, label_path, label_sha256, labelled_records, train
    from scorers.signals import signals

    labels = label_path(args.labels)
    agreeing_labels({"labels": labels})
    job = Ingest([args.dataset], IngestOptions())
    records = pl.concat([batch[0] for batch in job.batches()])
    labelled, y = labelled_records(records, labels)
    if args.limit:
        labelled, y = labelled.head(args.limit), y[: args.limit]
    scalars, hashed = signals(labelled)
    probe = train(scalars, hashed, y, args.judge, label_sha256(labels), c=args.c, folds=args.folds, seed=args.seed)
    out = args.out or DEFAULT_PROBE
    probe.save(out)
    m = probe.metrics
    print(
        f"probe: {m['labels']:,} labels ({m['positives']:,} positive, base rate {m['base_rate']}), "
        f"{m['folds']}-fold ROC AUC {m['cv_auc']}, precision in the top 10 % {m['precision_top10pct']} "
        f"(response length alone: AUC {m['length_only_auc']}), C {m['C']}"
    )
    print(f"wrote {out}")


def _score_spec(args: argparse.Namespace):
    from curate.recipes.recipe import ScoreSpec

    return ScoreSpec(probe=args.probe, helpfulness_probe=args.helpfulness_probe)


def cmd_score(args: argparse.Namespace) -> None:
    from scorers.probe import load_probes, probe_stage

    spec = _score_spec(args)
    probes = load_probes(spec.probe_paths())
    plan = {
        "probes": {column: probe.metrics for column, probe in probes.items()},
        "combine": [c.model_dump() for c in spec.combine],
        "ifd": args.ifd,
    }
    started = start(args, "score", {**plan, "ifd_model": args.ifd_model})
    if started is None:
        return
    writer, records = started
    embedder, _ = embedder_from(args)
    result = probe_stage(records, probes, spec.combine, embedder, progress=not args.quiet)
    st = result.stats
    print(
        f"quality: {records.height:,} records at {st['records_per_s']:,.0f}/s; mean "
        + ", ".join(f"{column} {st[f'mean_{column}']}" for column in probes)
        + f"; {st['degenerate']:,} degenerate; median response {st['median_response_words']} words"
    )
    kept = writer.add(result)
    if args.ifd:
        from scorers.ifd import IfdParams, ifd_stage

        scored = ifd_stage(kept, IfdParams(model=args.ifd_model, batch_size=args.ifd_batch), progress=not args.quiet)
        print(
            f"ifd: {scored.stats['scored']:,} scored with {args.ifd_model or 'SmolLM2-135M-Instruct'} on "
            f"{scored.stats['device']}, median {scored.stats['median_ifd']}"
        )
        kept = writer.add(scored)
    done(writer.finish(kept), args.out)


def cmd_judge(args: argparse.Namespace) -> None:
    from curate.llm.chat import ChatClient
    from scorers.judge import JudgeSampling, judge_records, judge_summary, load_prompt

    prompt = load_prompt(args.prompt)
    settings = chat_settings(args)
    sampling = JudgeSampling(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    plan = {
        "judge": {"prompt": prompt.name, "prompt_sha256": prompt.sha256(), "limit": args.limit},
        "endpoint": {"base_url": settings.base_url, "model": settings.model},
        "sampling": sampling.__dict__,
    }
    started = start(args, "judge", plan)
    if started is None:
        return
    writer, records = started
    with ChatClient(settings) as client:
        result = judge_records(records, client, prompt, sampling, args.limit, progress=not args.quiet)
    manifest = writer.finish(writer.add(result))
    print(judge_summary(result.stats))
    print(f"  annotations: {writer.run.annotations_path(result.name)}")
    done(manifest, args.out)


def register(sub) -> None:
    for name, helptext in (
        ("embed", "embed records with a sentence-transformers model (cached)"),
        ("semdedup", "semantic dedup: k-means over embeddings, cosine within clusters"),
    ):
        p = stage_parser(sub, name, helptext, cmd_embed if name == "embed" else cmd_semdedup)
        embedding_options(p)
        if name == "semdedup":
            g = p.add_argument_group("semdedup")
            g.add_argument("--threshold", type=float, default=0.95, help="cosine at or above which to dedup")
            g.add_argument("--clusters", type=int, help="k-means clusters (default: one per 100 records)")
            g.add_argument(
                "--keep",
                default="hard",
                choices=["hard", "easy", "first"],
                help="which of a group to keep: hard (farthest from centroid), easy, first",
            )
            g.add_argument("--seed", type=int, default=0, help="k-means seed")
        finish_stage_parser(p)

    p = stage_parser(sub, "select", "choose a subset: threshold, top_k, random, longest, diverse, kcenter", cmd_select)
    g = p.add_argument_group("selection")
    g.add_argument(
        "--strategy", required=True, choices=["threshold", "top_k", "random", "longest", "diverse", "kcenter"]
    )
    g.add_argument("--n", "--keep", dest="n", type=int, help="how many records to keep")
    g.add_argument("--by", help="score column from the run's annotations (or response_words)")
    g.add_argument("--min", type=float, help="threshold: the lowest score kept")
    g.add_argument("--seed", type=int, default=0, help="random: the seed")
    g.add_argument("--max-cosine", type=float, default=0.9, help="diverse: skip records this close to a chosen one")
    g.add_argument("--stratify", metavar="COLUMN", help="split --n over this column's values (source, category, ...)")
    g.add_argument("--quota", default="proportional", choices=["proportional", "equal"], help="how --stratify splits")
    g.add_argument("--candidates", type=int, help="diverse/kcenter: choose among this many best by --by")
    g.add_argument(
        "--min-median-ratio",
        type=float,
        metavar="R",
        help="top_k: keep the selection's median response at least R times the pool's (a length guard)",
    )
    embedding_options(p)
    finish_stage_parser(p)

    p = sub.add_parser("probe", help="the judge-distilled quality probe")
    probe_sub = p.add_subparsers(dest="probe_command", required=True, metavar="ACTION")
    t = probe_sub.add_parser("train", help="train the probe on judge labels (JSON lines) and report CV metrics")
    t.add_argument(
        "labels", metavar="LABELS", help="a registry name or a file of rows {row, score_at_least_4_5} or {id, label}"
    )
    t.add_argument("--dataset", default="alpaca", help="the records the labels name (default alpaca)")
    t.add_argument("--out", help="probe file to write (default: the shipped scorers/probes/...json)")
    t.add_argument("--judge", default="alpagasus-claude-accuracy", help="a name for the judge the labels come from")
    t.add_argument(
        "--c", type=float, help="inverse regularization of the logistic regression (default: chosen by 3-fold CV AUC)"
    )
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only the first N labels (quick checks)")
    embedding_options(t)  # kept so existing commands still parse; the probes read no embeddings
    t.set_defaults(func=cmd_probe_train)

    p = stage_parser(
        sub, "score", "annotate records with the judge probes (quality_probe, helpfulness_probe) and signals", cmd_score
    )
    p.add_argument("--probe", help="accuracy probe file (default: the shipped one)")
    p.add_argument("--helpfulness-probe", help="helpfulness probe file (default: the shipped one)")
    p.add_argument("--ifd", action="store_true", help="also annotate IFD with a causal LM (slow on CPU)")
    p.add_argument("--ifd-model", help="causal LM for IFD (default: bundled SmolLM2-135M-Instruct)")
    p.add_argument("--ifd-batch", type=int, default=8, help="sequences per forward pass for IFD")
    embedding_options(p)
    finish_stage_parser(p)

    p = stage_parser(sub, "judge", "rate records 0-5 with an LLM judge (AlpaGasus style; judge_score)", cmd_judge)
    g = p.add_argument_group("judge")
    g.add_argument("--prompt", default="curate", help="curate (default), alpagasus (the published prompt) or PATH")
    g.add_argument("--limit", type=int, help="judge only the first N records (the rest: judge_error not_judged)")
    g.add_argument("--max-tokens", type=int, default=256, help="reply length at most (256, as AlpaGasus)")
    g.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    g.add_argument("--seed", type=int, default=0, help="seed sent with each request")
    endpoint_options(p)
    finish_stage_parser(p)
