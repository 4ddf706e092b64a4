"""Benchmark: the bundled LoRA trainer against a plain Hugging Face ``Trainer``, and the CI preset.

Prints progress lines, then one JSON object as its last line:

* ``tokens_per_s``: real (non-padding) tokens per second of ``curate train`` on the default
  model (SmolLM2-135M-Instruct, LoRA r=16 on q/k/v/o), one epoch over the same Alpaca examples.
* ``baseline_tokens_per_s``: the same model, LoRA config, examples (the same response-only labels),
  batch size, optimizer and schedule through ``transformers.Trainer``, padded to the longest in each
  batch, no length grouping. Each side runs in a fresh process, one after the other, same run.
* ``speedup``: their ratio (target >= 1.5).
* ``peak_rss_mb``: peak resident memory of the ``curate train`` process.
* ``ci_preset_seconds``: wall time of ``curate ablate --preset ci --out DIR`` (``--skip-ci`` omits it).

``--examples``, ``--max-len`` and ``--batch-size`` size the throughput part (defaults fit a shared
2-core CPU; use e.g. ``--examples 512 --max-len 512`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def baseline_worker(run: str, examples: int, max_len: int, batch_size: int, device: str | None) -> dict:
    """A plain ``transformers.Trainer`` on the same examples; prints its tokens/s as JSON."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from curate.training.trainer import TrainConfig, build_model, labels_for, load_examples

    config = TrainConfig(limit=examples, max_len=max_len, batch_size=batch_size, grad_accum=1, eval_n=1)
    model, lm = build_model(config, device)
    encoded, _ = load_examples(run, config, lm.tokenizer)
    rows = [{"input_ids": e.ids, "attention_mask": [1] * e.length, "labels": labels_for(e)} for e in encoded]
    steps = -(-len(rows) // batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=1,
            max_steps=steps,
            learning_rate=config.lr,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, int(config.warmup_ratio * steps)),
            max_grad_norm=1.0,
            save_strategy="no",
            report_to=[],
            logging_steps=steps,
            seed=config.seed,
            use_cpu=not lm.device.startswith("cuda"),
            bf16=lm.device.startswith("cuda") and torch.cuda.is_bf16_supported(),
            dataloader_num_workers=0,
            remove_unused_columns=False,
            disable_tqdm=True,
        )
        collator = DataCollatorForSeq2Seq(lm.tokenizer, padding="longest", label_pad_token_id=-100)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
        start = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - start
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--skip-ci", action="store_true")
    parser.add_argument("--ci-out", help="keep the CI preset's output here (default: a temp folder)")
    parser.add_argument("--baseline-worker", metavar="RUN", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        result = baseline_worker(args.baseline_worker, args.examples, args.max_len, args.batch_size, args.device)
        print(json.dumps(result))
        return

    from curate.training.ablate import ci_source

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as scratch:
        run = ci_source(Path(scratch) / "data", progress=False)
        steps = -(-args.examples // args.batch_size)
        log(f"curate train: {args.examples} Alpaca examples, max_len {args.max_len}, batch {args.batch_size}")
        ours_cmd = [sys.executable, "-m", "curate.cli", "train", str(run), "--out", f"{scratch}/ours"]
        ours_cmd += ["--limit", str(args.examples), "--max-len", str(args.max_len)]
        ours_cmd += ["--batch-size", str(args.batch_size)]
        ours_cmd += ["--grad-accum", "1", "--max-steps", str(steps), "--eval-n", "1", "--quiet"]
        ours_cmd += ["--device", args.device] if args.device else []
        subprocess.run(ours_cmd, check=True, cwd=ROOT, env=env, stdout=sys.stderr)
        ours = json.loads(Path(f"{scratch}/ours/metrics.json").read_text())
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        log(f"  {ours['tokens_per_s']} tokens/s, peak RSS {peak:.0f} MB")
        log("HF Trainer baseline (padded to the longest, no length grouping)")
        worker = [sys.executable, __file__, "--baseline-worker", str(run), "--examples", str(args.examples)]
        worker += ["--max-len", str(args.max_len), "--batch-size", str(args.batch_size)]
        worker += ["--device", args.device] if args.device else []
        done = subprocess.run(worker, check=True, cwd=ROOT, env=env, capture_output=True, text=True)
        baseline = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"  {baseline['tokens_per_s']} tokens/s")
        result = {
            "tokens_per_s": ours["tokens_per_s"],
            "baseline_tokens_per_s": baseline["tokens_per_s"],
            "speedup": round(ours["tokens_per_s"] / baseline["tokens_per_s"], 3),
            "peak_rss_mb": round(peak, 1),
            "baseline_peak_rss_mb": baseline["peak_rss_mb"],
            "examples": args.examples,
            "max_len": args.max_len,
            "batch_size": args.batch_size,
            "device": ours["device"],
            "ci_preset_seconds": None,
        }
        if not args.skip_ci:
            out = args.ci_out or f"{scratch}/ci"
            log(f"curate ablate --preset ci --out {out}")
            start = time.monotonic()
            ci_cmd = [sys.executable, "-m", "curate.cli", "ablate", "--preset", "ci", "--out", out]
            subprocess.run(ci_cmd, check=True, cwd=ROOT, env=env, stdout=sys.stderr)
            result["ci_preset_seconds"] = round(time.monotonic() - start, 1)
        result["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
