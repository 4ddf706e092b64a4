"""Training and ablations: train, ablate, pairwise."""

from __future__ import annotations

import argparse

from curate.cli.options import usage


def _train_config(args: argparse.Namespace):
    from curate.training.trainer import TrainConfig

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
        packing=not args.no_packing,
        tokens_per_batch=args.tokens_per_batch,
        compile=args.compile,
    )


def _local_out(args: argparse.Namespace, what: str) -> None:
    """Training, ablation and pairwise outputs are local folders and files (not run directories)."""
    from curate.io.storage import is_remote

    if args.out and is_remote(args.out):
        raise usage(f"--out {args.out}: {what} is written to a local path; object storage takes run directories only")


def cmd_train(args: argparse.Namespace) -> None:
    from curate.training.trainer import train

    _local_out(args, "a training run")
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
    if m.get("effective_batch_tokens"):
        print(
            f"  {m['attention']}: {m['tokens_per_batch']:,} tokens per micro-batch, "
            f"{m['effective_batch_tokens']:,} per step (mean {m['mean_tokens_per_step']:,.0f} real)"
        )
    print(f"  adapter: {args.out}/adapter  metrics: {args.out}/metrics.json  loss curve: {args.out}/loss_curve.png")


def cmd_ablate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from curate.api import recipe_arm
    from curate.training.ablate import load_spec, preset, run_ablation, with_seeds
    from dataset_cards.ablation import results_markdown

    _local_out(args, "an ablation")

    if bool(args.spec) == bool(args.preset):
        raise usage("give an ablation spec (YAML) or --preset ci|cpu|full, not both")
    spec = preset(args.preset) if args.preset else load_spec(args.spec)
    out = Path(args.out or f"ablations/{spec.name}")
    spec = with_seeds(spec, args.seeds)
    summary = run_ablation(spec, out, progress=not args.quiet, device=args.device, run_recipe=recipe_arm)
    print(results_markdown(summary, spec.train.get("model")), end="")
    print(f"  results: {out}/results.json ({len(summary['arms']) * len(spec.seeds)} entries), {out}/summary.json,")
    print(f"  {out}/results.md, plot {out}/ablation.png; adapters under {out}/train/")


def cmd_pairwise(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from curate.io.atomic import write_json
    from curate.training.pairwise import endpoint_judge, judge_arms

    _local_out(args, "a pairwise result")

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
    g.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="examples per padded micro-batch (packing without --tokens-per-batch: budget = this x mean length)",
    )
    g.add_argument(
        "--tokens-per-batch",
        type=int,
        metavar="N",
        help="real tokens per packed micro-batch (padded: rows x longest); the step is N x --grad-accum tokens",
    )
    g.add_argument("--no-packing", action="store_true", help="pad one example per row instead of packing")
    g.add_argument("--compile", action="store_true", help="torch.compile the decoder (off by default: see the docs)")
    g.add_argument("--grad-accum", type=int, default=2, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=3e-4)
    g.add_argument("--warmup-ratio", type=float, default=0.03, help="share of steps of linear warmup before cosine")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-group-by-length", action="store_true", help="plain shuffled batches")
    g.add_argument("--eval-n", type=int, default=805, help="AlpacaEval prompts to evaluate on (805: all)")
    g.add_argument("--limit", type=int, help="train on the first N records only (quick checks)")
    g.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    g.add_argument("--quiet", action="store_true", help="no progress lines")


def register(sub) -> None:
    p = sub.add_parser("train", help="train LoRA adapters on a run directory; eval loss on AlpacaEval")
    p.add_argument("run", metavar="RUN", help="a run directory (its shards are read through the manifest)")
    p.add_argument("--out", required=True, metavar="TRAIN_DIR", help="adapter, metrics.json, loss_curve.png")
    _train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ablate", help="fixed-model data ablation: arms x seeds, mean and 95%% CI per arm")
    p.add_argument("spec", nargs="?", metavar="ABLATION.yaml", help="the ablation spec (arms, budget, seeds)")
    p.add_argument(
        "--preset",
        choices=["ci", "cpu", "full"],
        help="ci: minutes, in CI; cpu: curated vs random within an hour on 2 cores; full: the Alpaca arms (GPU)",
    )
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
