"""Benchmark: the bundled LoRA trainer (packed) against ``transformers.Trainer`` and TRL's ``SFTTrainer``.

Every side trains the same model (SmolLM2-135M-Instruct, LoRA r=16 alpha=32 on q/k/v/o), on the
same Alpaca examples, with the same learning rate, warmup + cosine schedule, clipping and
effective batch in tokens (``--tokens-per-batch``, one micro-batch per step), one epoch:

* ``ours``: ``curate train`` (packed, padding-free, per-example attention);
* baseline 1: ``transformers.Trainer`` grouping by length (``train_sampling_strategy="group_by_length"``),
  ``batch_size`` rows per step where ``batch_size x mean length = tokens per batch``;
* baseline 2: TRL ``SFTTrainer`` with ``packing=True`` (best-fit decreasing, padding-free rows of
  ``max_length = tokens per batch``) and completion-only loss on prompt/completion records.

Each side runs in a fresh process, alternating in rounds (``--rounds``, order rotated), and its
wall time covers its own data preparation (tokenising, packing) and training, not the model load
(the same for all). Figures are medians over rounds; ``tokens_per_s`` counts real tokens.
``loss_matches_baseline``: the loss before the first update on the same 8 examples, ours (packed)
against the Trainer's own ``compute_loss`` on its padded batch, within 1e-3 relative (the run
fails otherwise). ``mfu`` (GPU only): 6 x parameters x tokens/s over the chip's dense bf16 peak.

Prints progress lines on stderr, then one JSON object as the last line (``benchmarks/targets.py``).
On a GPU: ``python benchmarks/train.py --run runs/alpaca --examples 12000 --max-len 512 --tokens-per-batch 8192
--rounds 1 --skip-ci`` (about 290 steps a side).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.targets import finish, target  # noqa: E402

SIDES = ("ours", "trainer", "trl")
PROBE = 8
# Dense bf16 peak FLOP/s by device name, for MFU.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config(args: argparse.Namespace):
    from curate.training.trainer import TrainConfig

    return TrainConfig(
        limit=args.examples,
        max_len=args.max_len,
        tokens_per_batch=args.tokens_per_batch,
        grad_accum=1,
        eval_n=1,
        compile=args.side == "ours-compile",
    )


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _probe_loss_ours(args: argparse.Namespace) -> float:
    """Our packed loss on the first examples, before any update (a fresh model, seeded as in training)."""
    import torch

    from curate.training.trainer import build_model, load_examples, micro_batch, response_loss_sum, to_device

    config = _config(args)
    model, lm = build_model(config, args.device)
    examples, _ = load_examples(args.run, config, lm.tokenizer)
    model.eval()
    with torch.no_grad():
        batch = to_device(micro_batch(examples[:PROBE], lm.tokenizer.pad_token_id, True), lm.device)
        loss, count = response_loss_sum(model, batch)
    return float(loss) / count


def worker_ours(args: argparse.Namespace) -> dict:
    from curate.training.trainer import train

    probe = _probe_loss_ours(args)
    with tempfile.TemporaryDirectory() as scratch:
        result = train(args.run, Path(scratch) / "ours", _config(args), device=args.device, progress=False)
    m = result.metrics
    seconds = m["prepare_seconds"] + m["train_seconds"]
    return {
        "tokens": m["tokens_seen"],
        "seconds": round(seconds, 2),
        "steps": m["steps"],
        "first_loss": probe,
        "device": m["device"],
        "peak_memory_mb": m["peak_memory_mb"],
        "attention": m["attention"],
        "parameters": None,
    }


def _trainer_args(args, config, device: str, steps: int, scratch: str, **extra):
    import torch

    settings = {
        "output_dir": scratch,
        "gradient_accumulation_steps": 1,
        "max_steps": steps,
        "learning_rate": config.lr,
        "weight_decay": config.weight_decay,
        "lr_scheduler_type": "cosine",
        "warmup_steps": math.ceil(config.warmup_ratio * steps),
        "max_grad_norm": 1.0,
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": steps,
        "seed": config.seed,
        "use_cpu": not device.startswith("cuda"),
        "bf16": device.startswith("cuda") and torch.cuda.is_bf16_supported(),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    return {**settings, **extra}


def worker_trainer(args: argparse.Namespace) -> dict:
    """``transformers.Trainer``, group_by_length, on our tokenisation (response-only labels, same truncation)."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from curate.training.trainer import build_model, labels_for, load_examples

    config = _config(args)
    model, lm = build_model(config, args.device)
    device = lm.device
    start = time.monotonic()
    encoded, _ = load_examples(args.run, config, lm.tokenizer)
    rows = [{"input_ids": e.ids, "attention_mask": [1] * e.length, "labels": labels_for(e)} for e in encoded]
    mean = sum(len(r["input_ids"]) for r in rows) / len(rows)
    batch_size = max(1, round(args.tokens_per_batch / mean))
    steps = math.ceil(len(rows) / batch_size)
    collator = DataCollatorForSeq2Seq(lm.tokenizer, padding="longest", label_pad_token_id=-100)
    with tempfile.TemporaryDirectory() as scratch:
        settings = _trainer_args(
            args,
            config,
            device,
            steps,
            scratch,
            per_device_train_batch_size=batch_size,
            train_sampling_strategy="group_by_length",
            remove_unused_columns=False,
        )
        trainer = Trainer(model=model, args=TrainingArguments(**settings), train_dataset=rows, data_collator=collator)
        prepared = time.monotonic() - start
        model.eval()
        with torch.no_grad():
            probe = {k: v.to(device) for k, v in collator(rows[:PROBE]).items()}
            first_loss = float(trainer.compute_loss(model, probe))
        model.train()
        resumed = time.monotonic()
        trainer.train()
        seconds = prepared + time.monotonic() - resumed
    return {
        "tokens": sum(len(r["input_ids"]) for r in rows),
        "seconds": round(seconds, 2),
        "steps": steps,
        "batch_size": batch_size,
        "first_loss": first_loss,
        "device": device,
        "peak_memory_mb": _peak_memory_mb(device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def worker_trl(args: argparse.Namespace) -> dict:
    """TRL ``SFTTrainer``: prompt/completion records, its own tokenisation, BFD packing (padding-free)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from curate.training.trainer import build_model, prompt_and_response, training_records

    config = _config(args)
    model, lm = build_model(config, args.device)
    device = lm.device
    start = time.monotonic()
    records, _ = training_records(args.run, config)
    pairs = [prompt_and_response(r, config.template, lm.tokenizer) for r in records.iter_rows(named=True)]
    dataset = Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs])
    with tempfile.TemporaryDirectory() as scratch:
        settings = _trainer_args(
            args,
            config,
            device,
            -1,
            scratch,
            num_train_epochs=1,
            warmup_steps=config.warmup_ratio,
            logging_steps=10**6,
            per_device_train_batch_size=1,
            packing=True,
            packing_strategy="bfd",
            max_length=args.tokens_per_batch,
            completion_only_loss=True,
        )
        trainer = SFTTrainer(
            model=model, args=SFTConfig(**settings), train_dataset=dataset, processing_class=lm.tokenizer
        )
        packed = trainer.train_dataset
        steps = len(packed)
        tokens = sum(len(ids) for ids in packed["input_ids"])
        trainer.train()
        seconds = time.monotonic() - start
    return {
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "steps": steps,
        "first_loss": None,
        "device": device,
        "peak_memory_mb": _peak_memory_mb(device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run_side(side: str, args: argparse.Namespace, env: dict) -> dict:
    command = [sys.executable, __file__, "--worker", side, "--run", args.run, "--examples", str(args.examples)]
    command += ["--max-len", str(args.max_len), "--tokens-per-batch", str(args.tokens_per_batch)]
    command += ["--device", args.device] if args.device else []
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log(done.stderr[-3000:])
        raise SystemExit(f"the {side} worker failed")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["tokens_per_s"] = round(result["tokens"] / result["seconds"], 2)
    return result


def default_budget(args: argparse.Namespace) -> int:
    """``--batch-size`` x the mean example length: a padded batch of that many rows, in tokens."""
    from transformers import AutoTokenizer

    from curate.llm.lm import resolve_lm
    from curate.training.trainer import TrainConfig, load_examples

    tokenizer = AutoTokenizer.from_pretrained(resolve_lm(None))
    examples, _ = load_examples(args.run, TrainConfig(limit=args.examples, max_len=args.max_len), tokenizer)
    return round(args.batch_size * sum(e.length for e in examples) / len(examples))


def mfu(tokens_per_s: float, parameters: int | None, device: str) -> float | None:
    import torch

    if not device.startswith("cuda") or not parameters:
        return None
    name = torch.cuda.get_device_name()
    peak = next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)
    return round(6 * parameters * tokens_per_s / peak, 4) if peak else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="run directory to train on (default: the first 300 Alpaca records)")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--tokens-per-batch", type=int, help="tokens per step (default: --batch-size x mean length)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows whose mean tokens make the default budget")
    parser.add_argument("--skip-ci", action="store_true", help="do not time `curate ablate --preset ci`")
    parser.add_argument("--ci-out", help="keep the CI preset's output here (default: a temp folder)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    parser.add_argument("--device", default=None)
    parser.add_argument("--worker", choices=[*SIDES, "ours-compile"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.side = args.worker
        work = {"ours": worker_ours, "ours-compile": worker_ours, "trainer": worker_trainer, "trl": worker_trl}
        print(json.dumps(work[args.worker](args)))
        return

    args.side = None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as scratch:
        if args.run is None:
            from curate.training.ablate import ci_source

            args.run = str(ci_source(Path(scratch) / "data", progress=False))
        args.tokens_per_batch = args.tokens_per_batch or default_budget(args)
        sides = [*SIDES, "ours-compile"] if args.compile else list(SIDES)
        log(f"{args.examples} examples, max_len {args.max_len}, {args.tokens_per_batch} tokens per step")
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for round_ in range(args.rounds):
            for side in sides[round_ % len(sides) :] + sides[: round_ % len(sides)]:
                result = run_side(side, args, env)
                results[side].append(result)
                log(f"  round {round_ + 1} {side}: {result['tokens_per_s']} tokens/s ({result['steps']} steps)")
        ci_seconds = None
        if not args.skip_ci:
            out = args.ci_out or f"{scratch}/ci"
            log(f"curate ablate --preset ci --out {out}")
            start = time.monotonic()
            ci = [sys.executable, "-m", "curate.cli", "ablate", "--preset", "ci", "--out", out, "--quiet"]
            subprocess.run(ci, check=True, cwd=ROOT, env=env, stdout=sys.stderr)
            ci_seconds = round(time.monotonic() - start, 1)

    def median(side: str, key: str = "tokens_per_s") -> float:
        return round(statistics.median(r[key] for r in results[side]), 2)

    ours, baseline, trl = median("ours"), median("trainer"), median("trl")
    device = results["ours"][0]["device"]
    first, reference = results["ours"][0]["first_loss"], results["trainer"][0]["first_loss"]
    matches = abs(first - reference) <= 1e-3 * abs(reference)
    figures = {
        "tokens_per_s": ours,
        "baseline_tokens_per_s": baseline,
        "trl_tokens_per_s": trl,
        "speedup": round(ours / baseline, 3),
        "speedup_vs_trl": round(ours / trl, 3),
        "loss_matches_baseline": matches,
        "first_loss": round(first, 6),
        "baseline_first_loss": round(reference, 6),
        "mfu": mfu(ours, results["trainer"][0]["parameters"], device),
        "device": device,
        "peak_memory_mb": max(r["peak_memory_mb"] for r in results["ours"]),
        "baseline_peak_memory_mb": max(r["peak_memory_mb"] for r in results["trainer"]),
        "trl_peak_memory_mb": max(r["peak_memory_mb"] for r in results["trl"]),
        "attention": results["ours"][0]["attention"],
        "tokens_per_step": args.tokens_per_batch,
        "steps": {side: results[side][0]["steps"] for side in sides},
        "trainer_batch_size": results["trainer"][0]["batch_size"],
        "examples": args.examples,
        "max_len": args.max_len,
        "rounds": args.rounds,
        "runs": {side: [r["tokens_per_s"] for r in results[side]] for side in sides},
        "ci_preset_seconds": ci_seconds,
        "load_average": round(os.getloadavg()[0], 2),
    }
    if args.compile:
        figures["compile_tokens_per_s"] = median("ours-compile")
    gpu = device.startswith("cuda")
    targets = {
        "speedup": target(figures["speedup"], ">=", 3.0 if gpu else 1.5),
        "speedup_vs_trl": target(figures["speedup_vs_trl"], ">=", 1.2 if gpu else 1.0),
    }
    if gpu:
        targets["tokens_per_s"] = target(ours, ">=", 150_000)
    finish(figures, targets, {"loss_matches_baseline": matches})


if __name__ == "__main__":
    main()
