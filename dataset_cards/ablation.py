"""The ablation results table: one markdown rendering for results.md, the CLI, the flow artifact and
the arms' dataset cards."""

from __future__ import annotations

from typing import Any

_LABELS = {
    "eval_loss": "eval loss",
    "ifeval_prompt_strict": "IFEval prompt-strict %",
    "ifeval_prompt_loose": "IFEval prompt-loose %",
    "ifeval_inst_strict": "IFEval inst-strict %",
    "ifeval_inst_loose": "IFEval inst-loose %",
    "pairwise_win_minus_loss": "pairwise win − loss % vs control",
}


def _fmt(value: float | None, metric: str = "eval_loss") -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if metric in ("eval_loss", "eval_perplexity", "final_train_loss") else f"{value:.1f}"


def _interval(s: dict[str, Any], metric: str = "eval_loss") -> str:
    return "n/a" if s["low"] is None else f"[{_fmt(s['low'], metric)}, {_fmt(s['high'], metric)}]"


def _cell(s: dict[str, Any] | None, metric: str) -> str:
    if not s or s["mean"] is None:
        return "n/a"
    return f"{_fmt(s['mean'], metric)} {_interval(s, metric)}"


def results_markdown(summary: dict[str, Any], model: str | None = None) -> str:
    metrics = summary.get("metrics") or ["eval_loss"]
    per_arm = [m for m in metrics if m != "pairwise_win_minus_loss"]
    lines = [
        f"# Ablation `{summary['name']}`",
        "",
        f"- budget: {summary['budget_text']}",
        f"- seeds: {', '.join(map(str, summary['seeds']))}; model: {model or 'SmolLM2-135M-Instruct'} + LoRA, "
        "same hyperparameters for every arm",
    ]
    ran = summary.get("metrics_run") or {
        "eval_loss": f"held-out response loss on {summary['eval_prompts']} AlpacaEval references"
    }
    lines += [f"- metric {name}: {text}" for name, text in ran.items()]
    lines += [
        "- eval loss: lower is better; IFEval accuracies in percent, higher is better; "
        "each cell: mean over seeds [95% CI, Student t]",
        "",
        "| arm | records | seeds | " + " | ".join(_LABELS[m] for m in per_arm) + " |",
        "| --- | ---: | ---: | " + " | ".join("---" for _ in per_arm) + " |",
    ]
    for row in summary["arms"]:
        cells = " | ".join(_cell(row.get(m), m) for m in per_arm)
        size = f"{row['records']:,}" + (f" (a random {row['trained_on']:,} per seed)" if row.get("trained_on") else "")
        lines.append(f"| {row['arm']} | {size} | {len(row['seeds'])} | {cells} |")
    if summary["paired"]:
        lines += [
            "",
            "Paired differences (arm minus its random control of the same size, same seed):",
            "",
            "| arm | control | metric | mean difference | 95% CI | seeds | verdict |",
            "| --- | --- | --- | ---: | --- | ---: | --- |",
        ]
        for p in summary["paired"]:
            metric = p.get("metric", "eval_loss")
            lines.append(
                f"| {p['arm']} | {p['control']} | {_LABELS[metric]} | {_fmt(p['mean'], metric)} | "
                f"{_interval(p, metric)} | {len(p['seeds'])} | {p['verdict']} |"
            )
    return "\n".join(lines) + "\n"
