"""The funnel of a run: per stage, records in, kept, and rejected by reason."""

from __future__ import annotations

from typing import Any


def funnel_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "stage": s["name"],
            "in": s["in"],
            "kept": s["kept"],
            "rejected": s["rejected"],
            "reasons": s["rejected_by_reason"],
        }
        for s in manifest["stages"]
    ]


def funnel_table(manifest: dict[str, Any], markdown: bool = False) -> str:
    rows = funnel_rows(manifest)
    header = ["stage", "in", "kept", "rejected", "rejected by reason"]
    body = [
        [
            r["stage"],
            f"{r['in']:,}",
            f"{r['kept']:,}",
            f"{r['rejected']:,}",
            ", ".join(f"{k} {v:,}" for k, v in r["reasons"].items()) or "-",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    fmt = "  ".join(f"{{:{'<' if i in (0, 4) else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(line.rstrip() for line in [fmt.format(*header), *(fmt.format(*row) for row in body)])


def summary(manifest: dict[str, Any], root: str) -> str:
    records = manifest["records"]
    shards = manifest["outputs"]["data"]
    lines = [
        funnel_table(manifest),
        "",
        f"{records['in']:,} records in, {records['kept']:,} kept, {records['rejected']:,} rejected",
        f"run directory: {root}",
        f"  data: {len(shards)} shard(s) in {root}/data/",
        f"  rejects: {root}/rejects/   annotations: {root}/annotations/   manifest: {root}/manifest.json",
    ]
    lines += warnings(manifest)
    return "\n".join(lines)


def warnings(manifest: dict[str, Any], name: str | None = None) -> list[str]:
    """``WARNING`` lines for the stages whose stats carry a warning (a degenerate selection)."""
    return [
        f"WARNING {name or stage['name']}: {stage['stats']['warning']}"
        for stage in manifest.get("stages", [])
        if (stage.get("stats") or {}).get("warning")
    ]
