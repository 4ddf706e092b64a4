"""The ablation results table: one markdown rendering for results.md, the CLI, the flow artifact and
the arms' dataset cards."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _interval(s: dict[str, Any]) -> str:
    return "n/a" if s["low"] is None else f"[{s['low']:.4f}, {s['high']:.4f}]"


def results_markdown(summary: dict[str, Any], model: str | None = None) -> str:
    lines = [
        f"# Ablation `{summary['name']}`",
        "",
        f"- budget: {summary['budget_text']}",
        f"- seeds: {', '.join(map(str, summary['seeds']))}; model: {model or 'SmolLM2-135M-Instruct'} + LoRA, "
        "same hyperparameters for every arm",
        f"- metric: held-out response loss on {summary['eval_prompts']} AlpacaEval prompts with their reference "
        "outputs (lower is better); 95% CI: Student t over seeds",
        "",
        "| arm | records | seeds | eval loss (mean) | 95% CI | perplexity (mean) | final train loss (mean) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in summary["arms"]:
        lines.append(
            f"| {row['arm']} | {row['records']:,} | {len(row['seeds'])} | {_fmt(row['eval_loss']['mean'])} | "
            f"{_interval(row['eval_loss'])} | {_fmt(row['eval_perplexity']['mean'])} | "
            f"{_fmt(row['final_train_loss']['mean'])} |"
        )
    if summary["paired"]:
        lines += [
            "",
            "Paired differences (arm minus its random control of the same size, same seed):",
            "",
            "| arm | control | mean difference in eval loss | 95% CI | seeds | verdict |",
            "| --- | --- | ---: | --- | ---: | --- |",
        ]
        for p in summary["paired"]:
            lines.append(
                f"| {p['arm']} | {p['control']} | {_fmt(p['mean'])} | {_interval(p)} | {len(p['seeds'])} | "
                f"{p['verdict']} |"
            )
    return "\n".join(lines) + "\n"
