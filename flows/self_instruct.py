"""The ``self-instruct`` flow: grow new instruction tasks from seed tasks with a local LM or any
OpenAI-compatible endpoint, into a run directory.

Only wiring: the round loop, its checkpoints and reply cache live in
:mod:`curate.synth.self_instruct`, so a flow run killed mid-way resumes at its last finished round
when run again with the same parameters. The API key is never a parameter: ``api_key_env``
names the environment variable of the worker that holds it.
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from curate.run.directory import RunDir
from curate.run.funnel import funnel_table, summary
from curate.run.pipeline import UpToDate
from curate.synth.self_instruct import SelfInstructConfig, grow, sampling_for, summary_lines


@task(cache_policy=NONE)
def generate(
    seeds: str,
    config: SelfInstructConfig,
    out: str,
    backend: str,
    model: str | None,
    endpoint: dict[str, Any],
    embedding: bool,
) -> dict[str, Any] | None:
    if backend == "openai":
        from curate.llm.chat import ChatClient, ChatSettings
        from curate.synth.self_instruct import OpenAIGenerator

        api = endpoint.pop("api", "chat")
        generator = OpenAIGenerator(ChatClient(ChatSettings(model=model, **endpoint)), api=api)
    else:
        from curate.synth.self_instruct import LocalGenerator

        generator = LocalGenerator(model, cache_dir=endpoint.get("cache_dir"))
    novelty = None
    if embedding:
        from curate.synth.self_instruct import NoveltyEmbedder

        novelty = NoveltyEmbedder()
    try:
        _, stats = grow(
            seeds, generator, config, out, backend, novelty, invocation="flow self-instruct", progress=False
        )
    except UpToDate:
        return None
    return stats


@task(cache_policy=NONE)
def card(out: str) -> str:
    from dataset_cards.card import write_card

    return str(write_card(out))


@flow(name="self-instruct", log_prints=True)
def self_instruct(
    seeds: str = "alpaca-seed-tasks",
    n: int = 200,
    backend: str = "local",
    out: str = "runs/self-instruct",
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    api: str = "chat",
    concurrency: int = 4,
    cache_dir: str | None = None,
    seed: int = 0,
    examples: int = 3,
    tasks_per_request: int = 20,
    requests_per_round: int = 8,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    rouge_threshold: float = 0.7,
    embedding_threshold: float | None = 0.95,
    max_requests: int | None = None,
    max_total_tokens: int | None = None,
    max_seconds: float | None = None,
    max_rounds: int = 100,
) -> dict[str, Any]:
    """Grow ``n`` tasks from ``seeds``; returns the run's record counts and where it is."""
    logger = get_run_logger()
    config = SelfInstructConfig(
        n=n,
        seed=seed,
        examples=examples,
        tasks_per_request=tasks_per_request,
        requests_per_round=requests_per_round,
        **sampling_for(backend, temperature, top_p, max_tokens),
        rouge_threshold=rouge_threshold,
        embedding_threshold=embedding_threshold,
        max_requests=max_requests,
        max_tokens_total=max_total_tokens,
        max_seconds=max_seconds,
        max_rounds=max_rounds,
    )
    endpoint = {
        "base_url": base_url,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "cache_dir": cache_dir,
        "api": api,
    }
    if backend == "openai" and not (base_url and model):
        raise ValueError("backend openai needs base_url and model")
    stats = generate(seeds, config, out, backend, model, endpoint, embedding_threshold is not None)
    if stats is None:
        logger.info("%s is up to date; nothing to do", out)
    else:
        logger.info("%s", summary_lines(stats))
    manifest = RunDir(out).manifest()
    card_path = card(out)
    create_markdown_artifact(
        key="self-instruct-funnel",
        markdown=f"# self-instruct\n\n{funnel_table(manifest, markdown=True)}\n\nRun: `{out}`; card: `{card_path}`",
        description="candidates, accepted, rejected by reason",
    )
    return {"run": out, **manifest["records"]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the self-instruct flow locally.")
    parser.add_argument("--seeds", default="alpaca-seed-tasks")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--backend", choices=["local", "openai"], default="local")
    parser.add_argument("--out", default="runs/self-instruct")
    args = parser.parse_args()
    result = self_instruct(seeds=args.seeds, n=args.n, backend=args.backend, out=args.out)
    print(summary(RunDir(args.out).manifest(), args.out))
    print(f"\nself-instruct done: {result['kept']:,} tasks accepted")


if __name__ == "__main__":
    main()
