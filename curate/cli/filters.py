"""``curate filter`` and ``curate filters``: apply and list the registered filters."""

from __future__ import annotations

import argparse

from curate.cli.options import done, finish_stage_parser, stage_parser, start, usage


def cmd_filter(args: argparse.Namespace) -> None:
    import json

    from curate.recipes.recipe import FilterSpec, load_recipe
    from curate.stages.filter import run_filter
    from curate.stages.registry import get

    specs = list(load_recipe(args.recipe).filters) if args.recipe else []
    for use in args.use or []:
        specs.append(FilterSpec(use=use))
    for assignment in args.param or []:
        key, _, value = assignment.partition("=")
        stage, _, param = key.partition(".")
        target = next((s for s in specs if (s.name or s.use) == stage), None)
        if target is None or not param:
            raise usage(f"--param {assignment}: use STAGE.PARAM=VALUE for a filter in the recipe or --use")
        try:
            target.params[param] = json.loads(value)
        except json.JSONDecodeError:
            target.params[param] = value
    if not specs:
        raise usage("give filters with --recipe YAML or --use NAME (see `curate filters`)")
    filters = [(spec.name or spec.use, get("filter", spec.use)(**spec.params)) for spec in specs]
    plan = {
        "filters": [
            {"use": s.use, "name": s.name, "params": f.params.model_dump(mode="json")}
            for s, (_, f) in zip(specs, filters, strict=True)
        ],
    }
    started = start(args, "filter", plan)
    if started is None:
        return
    writer, records = started
    for name, stage in filters:
        records = writer.add(run_filter(records, stage, name))
    done(writer.finish(records), args.out)


def cmd_filters(args: argparse.Namespace) -> None:
    from curate.stages.registry import available, get

    for name in available("filter"):
        cls = get("filter", name)
        doc = (cls.__doc__ or cls.__module__).strip().splitlines()[0]
        print(f"{name:16} {doc}")
        if args.verbose:
            for field, info in cls.Params.model_fields.items():
                print(f"    {field}: {info.annotation} = {info.default!r}")


def register(sub) -> None:
    p = stage_parser(sub, "filter", "apply filters (language, length, hygiene, quality, pii, ...)", cmd_filter)
    p.add_argument("--recipe", metavar="YAML", help="a recipe with a filters list")
    p.add_argument("--use", action="append", metavar="NAME", help="add a filter by name (repeatable)")
    p.add_argument("--param", action="append", metavar="STAGE.PARAM=VALUE", help="set a filter parameter (JSON)")
    finish_stage_parser(p)

    p = sub.add_parser("filters", help="list the registered filters")
    p.add_argument("--verbose", "-v", action="store_true", help="show each filter's parameters")
    p.set_defaults(func=cmd_filters)
