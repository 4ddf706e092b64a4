"""The layering, checked over the import graph (every import, including those inside functions).

records/io/stages/run at the bottom; dedup, embed, llm and dataset_cards on them; filters,
scorers and selection above; synth and training above those; recipes configure stages; flows wire
library calls; the CLI sits on top and reaches flows only through ``curate.cli.runs``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curate", "filters", "scorers", "flows", "dataset_cards")
BOTTOM = {"errors", "records", "io", "stages", "run"}

# component -> the components it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "records": {"errors"},
    "io": {"errors", "records"},
    "stages": {"errors", "records"},
    "run": {"errors", "records", "io", "stages"},
    "dataset_cards": BOTTOM,
    "dedup": BOTTOM,
    "embed": BOTTOM,
    "llm": BOTTOM,
    "filters": BOTTOM,
    "scorers": BOTTOM | {"embed", "llm"},
    "selection": BOTTOM | {"embed"},
    "synth": BOTTOM | {"embed", "llm", "filters", "selection"},
    "training": BOTTOM | {"dataset_cards", "embed", "llm", "selection"},
    "recipes": BOTTOM | {"dedup", "selection", "filters", "scorers"},
    "api": BOTTOM
    | {"dataset_cards", "dedup", "embed", "llm", "filters", "scorers", "selection", "synth", "training", "recipes"},
}
ALLOWED["flows"] = set(ALLOWED) - {"flows"}
ALLOWED["cli"] = ALLOWED["flows"] | {"flows"}


def component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("filters", "scorers", "flows", "dataset_cards"):
        return parts[0]
    if parts[0] != "curate":
        return None
    if len(parts) == 1:
        return "api"
    return parts[1]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, module: str) -> set[str]:
    """Every project module this file imports, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in out if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges = {}
    for name, path in mods.items():
        edges[name] = {m for m in imports(path, name) if m in mods and m != name}
    return edges


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted(m for m in modules() if component(m) not in ALLOWED)
    assert not unknown, f"modules outside every layer: {unknown}"


def test_no_arrow_runs_the_wrong_way() -> None:
    wrong = []
    for source, targets in graph().items():
        here = component(source)
        for target in targets:
            there = component(target)
            if there != here and there not in ALLOWED[here] and not (there == "api" and target == "curate"):
                wrong.append(f"{source} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_only_the_cli_dispatch_reaches_flows() -> None:
    reaching = sorted(
        s for s, targets in graph().items() if component(s) == "cli" and any(component(t) == "flows" for t in targets)
    )
    assert reaching == ["curate.cli.runs"], reaching


def test_only_flows_import_prefect() -> None:
    offenders = []
    for name, path in modules().items():
        if component(name) == "flows":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n.split(".")[0] in ("prefect", "prefect_dask") for n in names):
                offenders.append(name)
    assert not offenders, f"library or CLI modules importing Prefect: {sorted(set(offenders))}"


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            # a package importing its own submodules (and them importing it) is not a cycle
            if len(group) > 1 and not all(g.startswith(min(group, key=len)) for g in group):
                cycles.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_layering_test_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from flows.curate_alpaca import curate_alpaca\n")
    found = imports(bad, "curate.records.m")
    assert "flows.curate_alpaca" in found
    assert component("flows.curate_alpaca") not in ALLOWED[component("curate.records.m")]
