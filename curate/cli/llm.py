"""Language-model commands: self-instruct and serve-lm."""

from __future__ import annotations

import argparse
import sys

from curate.cli.options import chat_settings, done, endpoint_options, up_to_date, usage


def cmd_self_instruct(args: argparse.Namespace) -> None:
    import shlex

    from curate.errors import CurateError
    from curate.run.pipeline import UpToDate
    from curate.synth.self_instruct import NoveltyEmbedder, SelfInstructConfig, grow, sampling_for, summary_lines

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
            args.seeds,
            generator,
            config,
            args.out,
            args.backend,
            novelty,
            invocation,
            progress=not args.quiet,
            overwrite=args.overwrite,
            publish=False,  # done() writes the card, then publishes (manifest last)
        )
    except UpToDate:
        return up_to_date(args.out)
    print(summary_lines(stats))
    done(manifest, args.out)


def _generator(args: argparse.Namespace):
    if args.backend == "openai":
        from curate.llm.chat import ChatClient
        from curate.synth.self_instruct import OpenAIGenerator

        if not args.base_url or not args.model:
            raise usage("--backend openai needs --base-url and --model")
        return OpenAIGenerator(ChatClient(chat_settings(args)), api=args.api)
    from curate.synth.self_instruct import LocalGenerator

    return LocalGenerator(args.model, device=args.device, batch_size=args.batch_size, cache_dir=args.cache)


def cmd_serve_lm(args: argparse.Namespace) -> None:
    from curate.llm.server import serve

    serve(args.host, args.port, args.model, args.device, args.max_batch, args.window)


def register(sub) -> None:
    p = sub.add_parser("self-instruct", help="grow new instruction tasks from seed tasks with an LM (Alpaca style)")
    p.add_argument("--seeds", default="alpaca-seed-tasks", help="seed tasks: a registry name or a JSONL file")
    p.add_argument("--n", type=int, default=200, help="accepted tasks to reach (200)")
    p.add_argument("--backend", choices=["local", "openai"], default="local", help="in-process HF LM or an endpoint")
    p.add_argument("--out", default="runs/self-instruct", metavar="RUN", help="run directory (runs/self-instruct)")
    p.add_argument("--overwrite", action="store_true", help="replace a curate run of other inputs or parameters")
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
    endpoint_options(p, required=False)
    p.set_defaults(func=cmd_self_instruct)
    p = sub.add_parser("serve-lm", help="serve a local causal LM over an OpenAI-compatible HTTP API (/v1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", help="HF causal LM name or path (default: bundled SmolLM2-135M-Instruct)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-batch", type=int, default=16, help="concurrent requests generated as one batch (16)")
    p.add_argument("--window", type=float, default=0.02, help="seconds to gather a batch after its first request")
    p.set_defaults(func=cmd_serve_lm)
