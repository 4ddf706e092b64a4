"""``curate dedup``: exact and MinHash LSH near-duplicates."""

from __future__ import annotations

import argparse
from pathlib import Path

from curate.cli.options import done, finish_stage_parser, out_of_core_options, stage_parser, start, usage


def _near_params(args: argparse.Namespace, spec):
    return spec.params(**{name: getattr(args, name, None) for name in spec.model_dump()})


def cmd_dedup(args: argparse.Namespace) -> None:
    from curate.dedup.exact import ExactDedupParams, exact_duplicates
    from curate.recipes.recipe import DedupSpec, ExactSpec, NearSpec, load_recipe
    from curate.records.normalize import TextNormalization

    spec = (load_recipe(args.recipe).dedup if args.recipe else None) or DedupSpec()
    exact_spec = spec.exact or (ExactSpec() if args.exact else None)
    near_spec = spec.near or (NearSpec() if args.near else None)
    if args.exact and spec.exact is None:
        exact_spec = ExactSpec()
    if args.near and spec.near is None:
        near_spec = NearSpec()
    if exact_spec is None and near_spec is None:
        raise usage("choose a dedup method: --exact, --near, or a --recipe with a dedup section")
    if args.dask and args.out_of_core is False:
        raise usage("--dask runs the out-of-core dedup passes; it does not go with --in-memory")
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
    started = start(args, "dedup", plan)
    if started is None:
        return
    writer, records = started
    from curate.dedup.out_of_core import frame_shards, use_out_of_core

    # By default inside the run's own folder (for a run at a URL, its staged copy; never uploaded).
    work = Path(args.work_dir) if args.work_dir else writer.run.root / ".checkpoints" / "near_dup"
    force = True if args.dask else args.out_of_core
    if exact is not None:
        if use_out_of_core(records.height, args.out_of_core_above, force=force):
            from curate.dedup.exact_out_of_core import exact_duplicates_out_of_core

            shards = frame_shards(records, args.ooc_shard_rows)
            exact_work = work / "exact_dedup" if args.work_dir else work.with_name("exact_dedup")
            done_ooc = exact_duplicates_out_of_core(
                shards, exact_work, exact, args.partitions, restart=not args.work_dir, dask=args.dask
            )
            records = writer.add(done_ooc.to_stage_result())
        else:
            records = writer.add(exact_duplicates(records, exact))
    if near is not None:
        from curate.dedup.index import open_index
        from curate.dedup.near import add_to_index, near_duplicates
        from curate.dedup.out_of_core import near_duplicates_out_of_core

        scores = writer.run.annotation_column(near.keep.split(":", 1)[1]) if near.keep.startswith("score:") else None
        if use_out_of_core(records.height, args.out_of_core_above, index_location, force=force):
            shards = frame_shards(records, args.ooc_shard_rows)
            done_ooc = near_duplicates_out_of_core(
                shards, work, near, args.partitions, scores, index_location, not args.work_dir, args.dask
            )
            records = writer.add(done_ooc.to_stage_result())
        else:
            index = open_index(index_location, near) if index_location else None
            result = near_duplicates(records, near, index=index, scores=scores)
            records = writer.add(result)
            if index is not None:
                add_to_index(index, result)
    done(writer.finish(records), args.out)


def register(sub) -> None:
    p = stage_parser(sub, "dedup", "remove exact and near duplicates", cmd_dedup)
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
    g = p.add_argument_group("exact and near, out of core (same result, bounded memory)")
    out_of_core_options(g)
    g.add_argument(
        "--work-dir",
        help="out-of-core work folder (exact dedup in its exact_dedup/); rerun with it to resume "
        "(default OUT/.checkpoints)",
    )
    g.add_argument("--ooc-shard-rows", type=int, default=100_000, help="records per out-of-core shard (100000)")
    g.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="the out-of-core passes of exact and near dedup as Dask tasks (implies --out-of-core): "
        "tcp://HOST:PORT or local:N",
    )
    finish_stage_parser(p)
