"""The ``curate`` command. Thin: parse, call the library, print a summary.

Heavy libraries load inside the subcommands, so ``curate --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_ERROR = 2


def _input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading sources (when INPUT is not a run directory)")
    group.add_argument("--format", help="alpaca, dolly, seed-tasks, lima, sharegpt or text (default: detect)")
    group.add_argument("--text-field", help="read this field as pretraining text")
    group.add_argument("--id-field", help="take source_id from this field")
    group.add_argument("--delimiter", metavar="LINE", help="split text files on lines equal to LINE, e.g. ------")
    group.add_argument("--strict", action="store_true", help="stop at the first bad row, naming file and line")
    group.add_argument("--max-chars", type=int, default=None, help="reject records longer than this")
    group.add_argument("--source-name", help="the source column for path inputs")
    group.add_argument("--license", help="the license column for path inputs")


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    parser.add_argument("--max-shard-rows", type=int, default=100_000, help="rows per Parquet shard at most")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _ingest_options(args: argparse.Namespace):
    from curate.ingest import DEFAULT_MAX_CHARS, IngestOptions

    return IngestOptions(
        format=args.format,
        text_field=args.text_field,
        id_field=args.id_field,
        delimiter=args.delimiter,
        strict=args.strict,
        max_chars=args.max_chars or DEFAULT_MAX_CHARS,
        source=args.source_name,
        license=args.license,
    )


def _writer(args: argparse.Namespace, command: str, plan: dict):
    import shlex
    import sys

    from curate.pipeline import ExportOptions, RunWriter

    invocation = shlex.join(["curate", *sys.argv[1:]])
    return RunWriter(args.out, command, plan, ExportOptions(max_shard_rows=args.max_shard_rows), invocation)


def _start(args: argparse.Namespace, command: str, plan: dict):
    """The writer and the input records of a stage command, or None when OUT is already up to date."""
    from curate.pipeline import UpToDate

    options = _ingest_options(args)
    writer = _writer(args, command, {"input": args.input, "ingest": options.params(), **plan})
    try:
        return writer, writer.open_input(args.input, options, progress=not args.quiet)
    except UpToDate:
        _up_to_date(args.out)
        return None


def _done(manifest: dict, out: str) -> None:
    from curate.funnel import summary
    from dataset_cards.card import write_card

    card = write_card(out)
    print(summary(manifest, out))
    print(f"  card: {card} (figures in {out}/figures/)")


def _up_to_date(out: str) -> None:
    from curate.funnel import summary
    from curate.run import RunDir

    print(f"{out} is up to date (same command and inputs); nothing to do.")
    print(summary(RunDir(out).manifest(), out))


def cmd_ingest(args: argparse.Namespace) -> None:
    from curate.pipeline import UpToDate

    options = _ingest_options(args)
    writer = _writer(args, "ingest", {"sources": args.sources, "ingest": options.params()})
    try:
        writer.ingest_streaming(args.sources, options, progress=not args.quiet)
    except UpToDate:
        return _up_to_date(args.out)
    _done(writer.manifest, args.out)


def _near_params(args: argparse.Namespace, spec):
    from curate.dedup.minhash import ShingleParams
    from curate.dedup.near import NearDedupParams

    values = spec.model_dump()
    for name in values:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    shingles = ShingleParams(values.pop("ngram"), values.pop("mode"), values.pop("max_shingles"))
    values.pop("index")
    return NearDedupParams(shingles=shingles, **values)


def cmd_dedup(args: argparse.Namespace) -> None:
    from curate.dedup.exact import ExactDedupParams, exact_duplicates
    from curate.normalize import TextNormalization
    from curate.recipe import DedupSpec, ExactSpec, NearSpec, load_recipe

    spec = (load_recipe(args.recipe).dedup if args.recipe else None) or DedupSpec()
    exact_spec = spec.exact or (ExactSpec() if args.exact else None)
    near_spec = spec.near or (NearSpec() if args.near else None)
    if args.exact and spec.exact is None:
        exact_spec = ExactSpec()
    if args.near and spec.near is None:
        near_spec = NearSpec()
    if exact_spec is None and near_spec is None:
        raise _usage("choose a dedup method: --exact, --near, or a --recipe with a dedup section")
    plan: dict = {}
    exact = near = None
    if exact_spec is not None:
        exact = ExactDedupParams(
            TextNormalization(
                unicode=args.unicode or exact_spec.unicode,
                casefold=exact_spec.casefold and not args.keep_case,
                collapse_whitespace=exact_spec.collapse_whitespace and not args.keep_whitespace,
            )
        )
        plan["exact"] = exact.as_dict()
    index_location = None
    if near_spec is not None:
        near = _near_params(args, near_spec)
        index_location = args.index or near_spec.index
        plan["near"] = near.as_dict()
        plan["index"] = index_location
    started = _start(args, "dedup", plan)
    if started is None:
        return
    writer, records = started
    if exact is not None:
        records = writer.add(exact_duplicates(records, exact))
    if near is not None:
        from curate.dedup.index import open_index
        from curate.dedup.near import add_to_index, near_duplicates

        index = open_index(index_location, near) if index_location else None
        scores = writer.run.annotation_column(near.keep.split(":", 1)[1]) if near.keep.startswith("score:") else None
        result = near_duplicates(records, near, index=index, scores=scores)
        records = writer.add(result)
        if index is not None:
            add_to_index(index, result)
    _done(writer.finish(records), args.out)


def cmd_filter(args: argparse.Namespace) -> None:
    import json

    from curate.filtering import run_filter
    from curate.recipe import FilterSpec, load_recipe
    from curate.registry import get

    specs = list(load_recipe(args.recipe).filters) if args.recipe else []
    for use in args.use or []:
        specs.append(FilterSpec(use=use))
    for assignment in args.param or []:
        key, _, value = assignment.partition("=")
        stage, _, param = key.partition(".")
        target = next((s for s in specs if (s.name or s.use) == stage), None)
        if target is None or not param:
            raise _usage(f"--param {assignment}: use STAGE.PARAM=VALUE for a filter in the recipe or --use")
        try:
            target.params[param] = json.loads(value)
        except json.JSONDecodeError:
            target.params[param] = value
    if not specs:
        raise _usage("give filters with --recipe YAML or --use NAME (see `curate filters`)")
    filters = [(spec.name or spec.use, get("filter", spec.use)(**spec.params)) for spec in specs]
    plan = {
        "filters": [
            {"use": s.use, "name": s.name, "params": f.params.model_dump(mode="json")}
            for s, (_, f) in zip(specs, filters, strict=True)
        ],
    }
    started = _start(args, "filter", plan)
    if started is None:
        return
    writer, records = started
    for name, stage in filters:
        records = writer.add(run_filter(records, stage, name))
    _done(writer.finish(records), args.out)


def cmd_filters(args: argparse.Namespace) -> None:
    from curate.registry import available, get

    for name in available("filter"):
        cls = get("filter", name)
        doc = (cls.__doc__ or cls.__module__).strip().splitlines()[0]
        print(f"{name:16} {doc}")
        if args.verbose:
            for field, info in cls.Params.model_fields.items():
                print(f"    {field}: {info.annotation} = {info.default!r}")


def _embedder(args: argparse.Namespace):
    from scorers.embedding import Embedder, EmbeddingCache, EmbedSettings

    embedder = Embedder(
        EmbedSettings(
            model=args.model,
            device=args.device,
            precision=args.precision,
            max_length=args.max_length,
            batch_size=args.batch_size,
        )
    )
    cache = None
    if not args.no_cache:
        cache = EmbeddingCache(args.cache or EmbeddingCache.default_root(), embedder.key(), embedder.dimension)
    return embedder, cache


def _embed_plan(args: argparse.Namespace) -> dict:
    return {"model": args.model, "field": args.field, "max_length": args.max_length, "precision": args.precision}


def cmd_embed(args: argparse.Namespace) -> None:
    from scorers.embedding import embed_stage

    started = _start(args, "embed", {"embed": _embed_plan(args)})
    if started is None:
        return
    writer, records = started
    embedder, cache = _embedder(args)
    result, _ = embed_stage(records, embedder, args.field, cache, progress=not args.quiet)
    print(
        f"embed: {result.stats['encoded']:,} encoded, {result.stats['from_cache']:,} from cache, "
        f"{result.stats['truncated']:,} truncated, on {result.stats['device']} ({result.stats['precision']})"
    )
    _done(writer.finish(writer.add(result)), args.out)


def cmd_semdedup(args: argparse.Namespace) -> None:
    from scorers.embedding import embed_stage
    from scorers.semdedup import SemDedupParams, semantic_duplicates

    params = SemDedupParams(threshold=args.threshold, clusters=args.clusters, keep=args.keep, seed=args.seed)
    started = _start(args, "semdedup", {"embed": _embed_plan(args), "semdedup": params.as_dict()})
    if started is None:
        return
    writer, records = started
    embedder, cache = _embedder(args)
    result, vectors = embed_stage(records, embedder, args.field, cache, progress=not args.quiet)
    records = writer.add(result)
    _done(writer.finish(writer.add(semantic_duplicates(records, vectors, params))), args.out)


def cmd_select(args: argparse.Namespace) -> None:
    import numpy as np

    from curate.select import SelectParams, select
    from curate.shards import frame_vectors

    params = SelectParams(
        strategy=args.strategy,
        n=args.n,
        by=args.by,
        min=args.min,
        seed=args.seed,
        max_cosine=args.max_cosine,
        stratify=args.stratify,
        quota=args.quota,
    )
    started = _start(args, "select", {"select": params.as_dict()})
    if started is None:
        return
    writer, records = started
    scores = writer.run.annotation_column(args.by) if args.by and args.by != "response_words" else None
    vectors = None
    if args.strategy in ("diverse", "kcenter"):
        stored = writer.run.annotation_column("embedding")
        if stored is not None and stored.height >= records.height:
            aligned = records.select("id").join(stored, on="id", how="left", maintain_order="left")
            if aligned["embedding"].null_count() == 0:
                vectors = frame_vectors(aligned, "embedding", np.float32)
        if vectors is None:
            from scorers.embedding import embed_records

            embedder, cache = _embedder(args)
            vectors, _ = embed_records(records, embedder, args.field, cache, progress=not args.quiet)
    result = select(records, params, scores=scores, vectors=vectors)
    if result.stats.get("mean_pairwise_cosine") is not None:
        st = result.stats
        print(
            f"select: mean pairwise cosine {st['mean_pairwise_cosine']} (random: "
            f"{st['random_mean_pairwise_cosine']}), clusters hit {st['clusters_hit']}/{st['clusters']} "
            f"(random: {st['random_clusters_hit']})"
        )
    _done(writer.finish(writer.add(result)), args.out)


def _embedding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding")
    g.add_argument(
        "--model",
        "--embedder",
        dest="model",
        help="sentence-transformers model name or path (default: bundled all-MiniLM-L6-v2)",
    )
    g.add_argument("--field", default="text", help="record column to embed (default text)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--max-length", type=int, help="truncate to this many tokens (default: the model's)")
    g.add_argument("--batch-size", type=int, help="texts per batch (16 on CPU, 256 on CUDA)")
    g.add_argument("--cache", metavar="DIR", help="embedding cache (default ~/.cache/curate/embeddings)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def cmd_probe_train(args: argparse.Namespace) -> None:
    import polars as pl

    from curate.ingest import Ingest, IngestOptions
    from scorers.probe import DEFAULT_PROBE, label_sha256, labelled_records, pair_vectors, train

    job = Ingest([args.dataset], IngestOptions())
    records = pl.concat([batch[0] for batch in job.batches()])
    labelled, y = labelled_records(records, args.labels)
    if args.limit:
        labelled, y = labelled.head(args.limit), y[: args.limit]
    embedder, cache = _embedder(args)
    prompt, response = pair_vectors(labelled, embedder, cache, progress=True)
    probe = train(
        labelled,
        prompt,
        response,
        y,
        embedder.settings.model_name(),
        label_sha256(args.labels),
        c=args.c,
        folds=args.folds,
        seed=args.seed,
    )
    out = args.out or DEFAULT_PROBE
    probe.save(out)
    m = probe.metrics
    print(
        f"probe: {m['labels']:,} labels ({m['positives']:,} positive, base rate {m['base_rate']}), "
        f"{m['folds']}-fold ROC AUC {m['cv_auc']}, precision in the top 10 % {m['precision_top10pct']} "
        f"(response length alone: AUC {m['length_only_auc']})"
    )
    print(f"wrote {out}")


def cmd_score(args: argparse.Namespace) -> None:
    from scorers.probe import DEFAULT_PROBE, QualityProbe, probe_stage

    probe = QualityProbe.load(args.probe or DEFAULT_PROBE)
    plan = {"probe": str(args.probe or DEFAULT_PROBE), "probe_metrics": probe.metrics, "ifd": args.ifd}
    started = _start(args, "score", {**plan, "ifd_model": args.ifd_model})
    if started is None:
        return
    writer, records = started
    embedder, cache = _embedder(args)
    result = probe_stage(records, probe, embedder, cache, progress=not args.quiet)
    print(
        f"quality: mean probe score {result.stats['mean_score']}, "
        f"median response {result.stats['median_response_tokens']} tokens"
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
    _done(writer.finish(kept), args.out)


def _endpoint_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("OpenAI-compatible endpoint")
    g.add_argument("--base-url", required=required, help="e.g. http://127.0.0.1:8000/v1 (see `curate serve-lm`)")
    g.add_argument("--model", required=required, help="model name sent to the endpoint")
    g.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key (never stored)")
    g.add_argument("--concurrency", type=int, default=4, help="requests in flight at most (4)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    g.add_argument("--retries", type=int, default=5, help="retries on 429, 5xx, timeouts, bad replies (5)")
    g.add_argument("--cache", metavar="DIR", help="reply cache (default $CURATE_CHAT_CACHE or ~/.cache/curate/chat)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the reply cache")
    g.add_argument("--price-in", type=float, help="dollars per 1M prompt tokens, for the cost line")
    g.add_argument("--price-out", type=float, help="dollars per 1M completion tokens")


def _chat_settings(args: argparse.Namespace):
    from curate.chat import ChatSettings

    return ChatSettings(
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retries=args.retries,
        cache_dir=args.cache,
        use_cache=not args.no_cache,
        price_in=args.price_in,
        price_out=args.price_out,
    )


def cmd_judge(args: argparse.Namespace) -> None:
    from curate.chat import ChatClient
    from scorers.judge import JudgeSampling, judge_records, judge_summary, load_prompt

    prompt = load_prompt(args.prompt)
    settings = _chat_settings(args)
    sampling = JudgeSampling(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    plan = {
        "judge": {"prompt": prompt.name, "prompt_sha256": prompt.sha256(), "limit": args.limit},
        "endpoint": {"base_url": settings.base_url, "model": settings.model},
        "sampling": sampling.__dict__,
    }
    started = _start(args, "judge", plan)
    if started is None:
        return
    writer, records = started
    with ChatClient(settings) as client:
        result = judge_records(records, client, prompt, sampling, args.limit, progress=not args.quiet)
    manifest = writer.finish(writer.add(result))
    print(judge_summary(result.stats))
    print(f"  annotations: {writer.run.annotations_path(result.name)}")
    _done(manifest, args.out)


def cmd_self_instruct(args: argparse.Namespace) -> None:
    import shlex

    from curate.errors import CurateError
    from curate.pipeline import UpToDate
    from curate.self_instruct import NoveltyEmbedder, SelfInstructConfig, grow, sampling_for, summary_lines

    config = SelfInstructConfig(
        n=args.n,
        seed=args.seed,
        examples=args.examples,
        tasks_per_request=args.tasks_per_request,
        requests_per_round=args.requests_per_round,
        **sampling_for(args.backend, args.temperature, args.top_p, args.max_tokens),
        rouge_threshold=args.rouge_threshold,
        reject_programs=not args.allow_programs,
        embedding_threshold=None if args.no_embedding else args.embedding_threshold,
        max_requests=args.max_requests,
        max_tokens_total=args.max_total_tokens,
        max_seconds=args.max_seconds,
        max_rounds=args.max_rounds,
    )
    generator = _generator(args)
    novelty = None
    if not args.no_embedding:
        try:
            novelty = NoveltyEmbedder(args.embedder)
        except (ImportError, OSError, CurateError) as exc:
            print(f"self-instruct: embedding novelty off ({exc})", file=sys.stderr)
    invocation = shlex.join(["curate", *sys.argv[1:]])
    try:
        manifest, stats = grow(
            args.seeds, generator, config, args.out, args.backend, novelty, invocation, progress=not args.quiet
        )
    except UpToDate:
        return _up_to_date(args.out)
    print(summary_lines(stats))
    _done(manifest, args.out)


def _generator(args: argparse.Namespace):
    if args.backend == "openai":
        from curate.chat import ChatClient
        from curate.self_instruct import OpenAIGenerator

        if not args.base_url or not args.model:
            raise _usage("--backend openai needs --base-url and --model")
        return OpenAIGenerator(ChatClient(_chat_settings(args)), api=args.api)
    from curate.self_instruct import LocalGenerator

    return LocalGenerator(args.model, device=args.device, batch_size=args.batch_size, cache_dir=args.cache)


def cmd_export(args: argparse.Namespace) -> None:

    started = _start(args, "export", {})
    if started is None:
        return
    writer, records = started
    _done(writer.finish(records), args.out)


def cmd_inspect(args: argparse.Namespace) -> None:
    import json

    from curate.funnel import funnel_rows, funnel_table
    from curate.run import RunDir

    run = RunDir(args.run)
    manifest = run.manifest()
    if args.json:
        print(json.dumps({"run": args.run, "records": manifest["records"], "funnel": funnel_rows(manifest)}, indent=2))
        return
    print(funnel_table(manifest, markdown=args.markdown))
    records = manifest["records"]
    print(
        f"\n{records['in']:,} in, {records['kept']:,} kept, {records['rejected']:,} rejected; "
        f"{len(manifest['outputs']['data'])} shard(s) in {args.run}/data/"
    )
    problems = run.verify()
    if problems:
        print("integrity problems:\n  " + "\n  ".join(problems))
        raise SystemExit(1)


def cmd_card(args: argparse.Namespace) -> None:
    from dataset_cards.card import write_card

    card = write_card(args.run)
    print(f"wrote {card} and {args.run}/figures/")


def cmd_run(args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    # Prefect's ephemeral server gets 20 s to start by default; a busy 2-core machine needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from curate.funnel import summary
    from curate.run import RunDir

    out = args.out or f"runs/{args.flow}"
    scale = {"dask": args.dask, "shard_rows": args.shard_rows}
    if args.flow == "curate-pretrain":
        from flows.curate_pretrain import curate_pretrain

        if not args.sources:
            raise _usage("curate-pretrain needs at least one SOURCE (files, folders of shards or registry names)")
        result = curate_pretrain(sources=args.sources, out=out, recipe=args.recipe, text_field=args.text_field, **scale)
    else:
        from flows.curate_alpaca import curate_alpaca

        sources = args.sources or ["alpaca"]
        result = curate_alpaca(sources=sources, out=out, recipe=args.recipe, keep_n=args.keep, **scale)
    manifest = RunDir(out).manifest()
    print(summary(manifest, out))
    print(f"  card: {result['card']} (figures in {out}/figures/)")
    for name, path in manifest.get("selections", {}).items():
        side = RunDir(Path(out) / path).manifest()
        print(f"  selection {name}: {side['records']['kept']:,} records in {Path(out) / path}/data/")
    print("  stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))


def cmd_serve(args: argparse.Namespace) -> None:
    from flows.serve import serve

    raise SystemExit(serve(args.port))


def cmd_serve_lm(args: argparse.Namespace) -> None:
    from curate.lm_server import serve

    serve(args.host, args.port, args.model, args.device, args.max_batch, args.window)


def cmd_datasets(args: argparse.Namespace) -> None:
    from curate import catalog

    for name, ds in sorted(catalog.registry().items()):
        print(f"{name:26} {ds.records or '?':>7} records  {ds.license:16} {ds.file}")


def _train_config(args: argparse.Namespace):
    from curate.trainer import TrainConfig

    return TrainConfig(
        model=args.model,
        template=args.template,
        max_len=args.max_len,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_ratio=args.warmup_ratio,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=tuple(args.target_modules.split(",")),
        seed=args.seed,
        group_by_length=not args.no_group_by_length,
        eval_n=args.eval_n,
        limit=args.limit,
    )


def cmd_train(args: argparse.Namespace) -> None:
    from curate.trainer import train

    result = train(
        args.run, args.out, _train_config(args), device=args.device, save_every=args.save_every, progress=not args.quiet
    )
    m = result.metrics
    if result.up_to_date:
        print(f"{args.out} is up to date (same data and configuration); nothing to do.")
    elif "eval" not in m:
        print(f"stopped after step {m['steps']} of {m['of']}; rerun the same command to resume")
        return
    if result.resumed_from:
        print(f"resumed from the checkpoint at step {result.resumed_from}")
    d = m["data"]
    print(
        f"trained {m['steps']} steps ({m['epochs']:g} epochs) on {d['examples']:,} examples of {d['run']} "
        f"({d['decontaminated']} dropped as AlpacaEval prompts); final train loss {m['final_train_loss']:.4f}"
    )
    print(
        f"  eval on {m['eval']['prompts']} AlpacaEval prompts: response loss {m['eval']['loss']:.4f}, "
        f"perplexity {m['eval']['perplexity']:.2f}; {m['tokens_per_s']:.0f} tokens/s on {m['device']}"
    )
    print(f"  adapter: {args.out}/adapter  metrics: {args.out}/metrics.json  loss curve: {args.out}/loss_curve.png")


def cmd_ablate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from curate.ablate import load_spec, markdown, preset, run_ablation, with_seeds

    if bool(args.spec) == bool(args.preset):
        raise _usage("give an ablation spec (YAML) or --preset ci|full, not both")
    if args.preset:
        out = Path(args.out or f"ablations/{args.preset}")
        spec = preset(args.preset, out, progress=not args.quiet)
    else:
        spec = load_spec(args.spec)
        out = Path(args.out or f"ablations/{spec.name}")
    spec = with_seeds(spec, args.seeds)
    summary = run_ablation(spec, out, progress=not args.quiet, device=args.device)
    print(markdown(summary, spec.train.get("model")), end="")
    print(f"  results: {out}/results.json ({len(summary['arms']) * len(spec.seeds)} entries), {out}/summary.json,")
    print(f"  {out}/results.md, plot {out}/ablation.png; adapters under {out}/train/")


def cmd_pairwise(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from curate.atomic import write_json
    from curate.pairwise import endpoint_judge, judge_arms

    judge = endpoint_judge(args.base_url, args.judge_model, args.api_key_env)
    result = judge_arms(args.a, args.b, judge, n=args.n, max_new_tokens=args.max_new_tokens)
    out = Path(args.out or Path(args.a) / f"pairwise-vs-{Path(args.b).name}.json")
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "outcomes"}))
    print(
        f"A={args.a} vs B={args.b} on {result['prompts']} AlpacaEval prompts (both orders): "
        f"win {result['win_rate']:.1%}, tie {result['tie_rate']:.1%}, loss {result['loss_rate']:.1%}; written to {out}"
    )


def _train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and LoRA")
    g.add_argument("--model", help="Hugging Face causal LM name or path (default: bundled SmolLM2-135M-Instruct)")
    g.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    g.add_argument("--lora-r", type=int, default=16)
    g.add_argument("--lora-alpha", type=int, default=32)
    g.add_argument("--lora-dropout", type=float, default=0.05)
    g.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj", help="comma-separated module names")
    g = p.add_argument_group("training")
    g.add_argument("--template", default="alpaca", choices=["alpaca", "chat"], help="prompt format (default alpaca)")
    g.add_argument("--epochs", type=float, default=1.0)
    g.add_argument("--max-steps", type=int, help="optimizer steps (wins over --epochs)")
    g.add_argument("--max-len", type=int, default=512, help="tokens per example at most")
    g.add_argument("--batch-size", type=int, default=8, help="examples per micro-batch")
    g.add_argument("--grad-accum", type=int, default=2, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=3e-4)
    g.add_argument("--warmup-ratio", type=float, default=0.03, help="share of steps of linear warmup before cosine")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-group-by-length", action="store_true", help="plain shuffled batches")
    g.add_argument("--eval-n", type=int, default=805, help="AlpacaEval prompts to evaluate on (805: all)")
    g.add_argument("--limit", type=int, help="train on the first N records only (quick checks)")
    g.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    g.add_argument("--quiet", action="store_true", help="no progress lines")


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _stage_parser(
    sub: Any, name: str, helptext: str, func: Callable[[argparse.Namespace], None], positional: str = "input"
) -> argparse.ArgumentParser:
    """A subcommand that reads INPUT (a run or sources) and writes a run; its own flags go between."""
    p = sub.add_parser(name, help=helptext)
    if positional == "input":
        p.add_argument("input", nargs="+", metavar="INPUT", help="a run directory, or sources as for ingest")
    else:
        p.add_argument("sources", nargs="+", metavar="SOURCE", help="a registry name (e.g. alpaca) or a path")
    p.set_defaults(func=func)
    return p


def _finish_stage_parser(p: argparse.ArgumentParser) -> None:
    _export_options(p)
    _input_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="curate",
        description="Data-centric dataset curation: ingest, deduplicate, filter, score, select, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _stage_parser(sub, "ingest", "read sources into a run directory (streaming)", cmd_ingest, "sources")
    _finish_stage_parser(p)

    p = _stage_parser(sub, "dedup", "remove exact and near duplicates", cmd_dedup)
    p.add_argument("--exact", action="store_true", help="exact dedup on normalized content")
    p.add_argument("--near", action="store_true", help="MinHash LSH near-dedup (after --exact when both)")
    p.add_argument("--recipe", metavar="YAML", help="a recipe with a dedup section (flags override it)")
    g = p.add_argument_group("exact")
    g.add_argument("--unicode", default=None, help="Unicode normalization before comparing (default NFKC; none)")
    g.add_argument("--keep-case", action="store_true", help="compare case-sensitively")
    g.add_argument("--keep-whitespace", action="store_true", help="do not collapse whitespace")
    g = p.add_argument_group("near")
    g.add_argument("--threshold", type=float, help="Jaccard at or above which texts are near-duplicates (0.8)")
    g.add_argument("--ngram", type=int, help="tokens per shingle (5)")
    g.add_argument("--char", dest="mode", action="store_const", const="char", help="character shingles")
    g.add_argument("--num-perm", type=int, help="MinHash permutations (128)")
    g.add_argument("--seed", type=int, help="permutation seed (1, as datasketch)")
    g.add_argument("--bands", type=int, help="LSH bands (default: optimal for the threshold)")
    g.add_argument("--rows", type=int, help="LSH rows per band")
    g.add_argument("--fp-weight", type=float, help="false-positive weight when choosing bands (0.05)")
    g.add_argument("--fn-weight", type=float, help="false-negative weight when choosing bands (0.95)")
    g.add_argument("--verify", choices=["exact", "estimate"], help="check candidates by exact or estimated Jaccard")
    g.add_argument("--keep", help="representative: first, longest or score:COLUMN (first)")
    g.add_argument("--max-shingles", type=int, help="shingles per text at most (100000)")
    g.add_argument("--index", help="incremental index: a folder, or redis://HOST:PORT/DB?basename=NAME")
    _finish_stage_parser(p)

    p = _stage_parser(sub, "filter", "apply filters (language, length, hygiene, quality, pii, ...)", cmd_filter)
    p.add_argument("--recipe", metavar="YAML", help="a recipe with a filters list")
    p.add_argument("--use", action="append", metavar="NAME", help="add a filter by name (repeatable)")
    p.add_argument("--param", action="append", metavar="STAGE.PARAM=VALUE", help="set a filter parameter (JSON)")
    _finish_stage_parser(p)

    for name, helptext in (
        ("embed", "embed records with a sentence-transformers model (cached)"),
        ("semdedup", "semantic dedup: k-means over embeddings, cosine within clusters"),
    ):
        p = _stage_parser(sub, name, helptext, cmd_embed if name == "embed" else cmd_semdedup)
        _embedding_options(p)
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
        _finish_stage_parser(p)

    p = _stage_parser(sub, "select", "choose a subset: threshold, top_k, random, longest, diverse, kcenter", cmd_select)
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
    _embedding_options(p)
    _finish_stage_parser(p)

    p = sub.add_parser("probe", help="the judge-distilled quality probe")
    probe_sub = p.add_subparsers(dest="probe_command", required=True, metavar="ACTION")
    t = probe_sub.add_parser("train", help="train the probe on judge labels (JSON lines) and report CV metrics")
    t.add_argument("labels", metavar="LABELS", help="rows {row, score_at_least_4_5} or {id, label}")
    t.add_argument("--dataset", default="alpaca", help="the records the labels name (default alpaca)")
    t.add_argument("--out", help="probe file to write (default: the shipped scorers/probes/...json)")
    t.add_argument("--c", type=float, default=0.0003, help="inverse regularization of the logistic regression")
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only the first N labels (quick checks)")
    _embedding_options(t)
    t.set_defaults(func=cmd_probe_train)

    p = _stage_parser(sub, "score", "annotate records with the quality probe's score (quality_probe)", cmd_score)
    p.add_argument("--probe", help="probe file (default: the shipped one)")
    p.add_argument("--ifd", action="store_true", help="also annotate IFD with a causal LM (slow on CPU)")
    p.add_argument("--ifd-model", help="causal LM for IFD (default: bundled SmolLM2-135M-Instruct)")
    p.add_argument("--ifd-batch", type=int, default=8, help="sequences per forward pass for IFD")
    _embedding_options(p)
    _finish_stage_parser(p)

    p = _stage_parser(sub, "judge", "rate records 0-5 with an LLM judge (AlpaGasus style; judge_score)", cmd_judge)
    g = p.add_argument_group("judge")
    g.add_argument("--prompt", default="curate", help="curate (default), alpagasus (the published prompt) or PATH")
    g.add_argument("--limit", type=int, help="judge only the first N records (the rest: judge_error not_judged)")
    g.add_argument("--max-tokens", type=int, default=256, help="reply length at most (256, as AlpaGasus)")
    g.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    g.add_argument("--seed", type=int, default=0, help="seed sent with each request")
    _endpoint_options(p)
    _finish_stage_parser(p)

    p = sub.add_parser("self-instruct", help="grow new instruction tasks from seed tasks with an LM (Alpaca style)")
    p.add_argument("--seeds", default="alpaca-seed-tasks", help="seed tasks: a registry name or a JSONL file")
    p.add_argument("--n", type=int, default=200, help="accepted tasks to reach (200)")
    p.add_argument("--backend", choices=["local", "openai"], default="local", help="in-process HF LM or an endpoint")
    p.add_argument("--out", default="runs/self-instruct", metavar="RUN", help="run directory (runs/self-instruct)")
    p.add_argument("--seed", type=int, default=0, help="seed for example sampling and generation")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    g = p.add_argument_group("generation")
    g.add_argument("--examples", type=int, default=3, help="seed tasks shown per request (3, as Alpaca)")
    g.add_argument("--tasks-per-request", type=int, default=20, help="tasks the prompt asks for (20)")
    g.add_argument("--requests-per-round", type=int, default=8, help="requests per round (8)")
    g.add_argument("--temperature", type=float, help="local 0.7; openai 1.0 (Alpaca's)")
    g.add_argument("--top-p", type=float, help="local 0.9; openai 1.0 (Alpaca's)")
    g.add_argument("--max-tokens", type=int, help="tokens per reply at most (local 256; openai 3072, Alpaca's)")
    g.add_argument("--api", choices=["chat", "completions"], default="chat", help="openai: endpoint kind (chat)")
    g.add_argument("--device", help="local: cpu or cuda (default: cuda when present)")
    g.add_argument("--batch-size", type=int, help="local: prompts per generation batch (default: a whole round)")
    g = p.add_argument_group("filters")
    g.add_argument("--rouge-threshold", type=float, default=0.7, help="reject at this ROUGE-L to the pool (0.7)")
    g.add_argument("--embedding-threshold", type=float, default=0.95, help="reject at this cosine to the pool")
    g.add_argument("--no-embedding", action="store_true", help="no embedding novelty filter")
    g.add_argument("--embedder", help="sentence-transformers model for novelty (default: all-MiniLM-L6-v2)")
    g.add_argument("--allow-programs", action="store_true", help="keep 'Write a program ...' tasks")
    g = p.add_argument_group("budgets (the loop stops at --n or the first budget spent)")
    g.add_argument("--max-requests", type=int, help="requests at most (cached ones count)")
    g.add_argument("--max-total-tokens", type=int, help="completion tokens at most")
    g.add_argument("--max-seconds", type=float, help="seconds of generation at most")
    g.add_argument("--max-rounds", type=int, default=100, help="rounds at most (100)")
    _endpoint_options(p, required=False)
    p.set_defaults(func=cmd_self_instruct)
    p = sub.add_parser("train", help="train LoRA adapters on a run directory; eval loss on AlpacaEval")
    p.add_argument("run", metavar="RUN", help="a run directory (its shards are read through the manifest)")
    p.add_argument("--out", required=True, metavar="TRAIN_DIR", help="adapter, metrics.json, loss_curve.png")
    _train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ablate", help="fixed-model data ablation: arms x seeds, mean and 95%% CI per arm")
    p.add_argument("spec", nargs="?", metavar="ABLATION.yaml", help="the ablation spec (arms, budget, seeds)")
    p.add_argument("--preset", choices=["ci", "full"], help="ci: small CPU run; full: the Alpaca arms (GPU)")
    p.add_argument("--out", metavar="DIR", help="ablation directory (default ablations/<name>)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser(
        "pairwise", help="two trained adapters' answers judged in both orders by an OpenAI-compatible endpoint"
    )
    p.add_argument("a", metavar="TRAIN_A", help="a `curate train` output directory")
    p.add_argument("b", metavar="TRAIN_B", help="the one to compare against (e.g. the random control)")
    p.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--judge-model", required=True, help="the judge model's name at that endpoint")
    p.add_argument("--api-key-env", help="environment variable holding the API key (the key is never stored)")
    p.add_argument("--n", type=int, default=50, help="AlpacaEval prompts (the same fixed subset as the eval)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--out", help="result JSON (default TRAIN_A/pairwise-vs-<B>.json)")
    p.set_defaults(func=cmd_pairwise)

    p = sub.add_parser("filters", help="list the registered filters")
    p.add_argument("--verbose", "-v", action="store_true", help="show each filter's parameters")
    p.set_defaults(func=cmd_filters)

    _finish_stage_parser(_stage_parser(sub, "export", "write the kept records as Parquet shards", cmd_export))

    p = sub.add_parser("inspect", help="the funnel of a run: stage, in, kept, rejected by reason")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("card", help="(re)write the run's dataset card, RUN/README.md, and its figures")
    p.add_argument("run", metavar="RUN")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("run", help="run a flow in Prefect's ephemeral mode, no server needed")
    p.add_argument("flow", choices=["curate-alpaca", "curate-pretrain"])
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="input (curate-alpaca default: alpaca)")
    p.add_argument("--out", help="run directory (default runs/FLOW)")
    p.add_argument("--recipe", metavar="YAML", help="recipe (default curate/recipes/FLOW.yaml)")
    p.add_argument("--keep", type=int, help="curate-alpaca: records the main selection keeps (recipe default 9000)")
    p.add_argument("--text-field", help="curate-pretrain: the field of JSONL/Parquet rows that holds the text")
    p.add_argument("--dask", metavar="ADDRESS", help="per-shard tasks on a Dask cluster: tcp://HOST:PORT or local:N")
    p.add_argument("--shard-rows", type=int, default=100_000, help="records per shard task (default 100000)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="local Prefect server + deployments + worker (Ctrl-C stops all)")
    p.add_argument("--port", type=int, default=4200, help="port of the server on 127.0.0.1")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("serve-lm", help="serve a local causal LM over an OpenAI-compatible HTTP API (/v1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", help="HF causal LM name or path (default: bundled SmolLM2-135M-Instruct)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-batch", type=int, default=16, help="concurrent requests generated as one batch (16)")
    p.add_argument("--window", type=float, default=0.02, help="seconds to gather a batch after its first request")
    p.set_defaults(func=cmd_serve_lm)

    p = sub.add_parser("datasets", help="list the dataset registry")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None, run: Callable[[argparse.Namespace], None] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        (run or args.func)(args)
    except _UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from curate.errors import CurateError

        if isinstance(exc, CurateError | ValueError | OSError):
            print(f"curate: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
