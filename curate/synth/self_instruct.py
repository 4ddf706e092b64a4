"""Self-instruct: grow an instruction set from seed tasks (Wang et al. 2023; Stanford Alpaca).

Each round sends ``requests_per_round`` prompts, each showing ``examples`` seed tasks sampled
with a seeded generator as numbered ``Instruction / Input / Output`` items and asking the model to
continue the list. Replies are parsed leniently; every candidate goes through the filters in a
fixed order, each rejection naming its reason, and survivors join the pool that later
candidates are compared with (ROUGE-L and, when the embedding engine is available, cosine).

Rounds are checkpointed (one Parquet file per finished round plus a small state file, written
atomically, state last) and every reply is cached by request hash, so a killed run restarts at
its last finished round and re-sends nothing that was answered. The loop stops at ``n`` accepted
tasks or when a budget (requests, tokens, seconds, rounds) is spent.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.io.atomic import write_json
from curate.llm.chat import ChatClient, ChatReply, ChatRequest, ReplyCache, default_cache_dir, reply_from_cache
from curate.records.ids import content_id
from curate.records.schema import (
    ID,
    INPUT,
    INSTRUCTION,
    KIND_INSTRUCTION,
    KIND_TEXT,
    META,
    OUTPUT,
    SOURCE_ID,
    conform,
)
from curate.synth.rouge import TokenCodes, nearest, rouge_l_matrix
from filters.hygiene import SELF_INSTRUCT_BLACKLIST

STAGE = "self_instruct"
SOURCE = "self-instruct"
LICENSE = "generated"

PROMPT_HEADER = """You are asked to come up with a set of {tasks} diverse task instructions. These task instructions will be given to a GPT model and we will evaluate the GPT model for completing the instructions.

Here are the requirements:
1. Try not to repeat the verb for each instruction to maximize diversity.
2. The language used for the instruction also should be diverse. For example, you should combine questions with imperative instructions.
3. The type of instructions should be diverse. The list should include diverse types of tasks like open-ended generation, classification, editing, etc.
4. A GPT language model should be able to complete the instruction. For example, do not ask the assistant to create any visual or audio output. For another example, do not ask the assistant to wake you up at 5pm or set a reminder because it cannot perform any action.
5. The instructions should be in English.
6. The instructions should be 1 to 2 sentences long. Either an imperative sentence or a question is permitted.
7. You should generate an appropriate input to the instruction. The input field should contain a specific example provided for the instruction. It should involve realistic data and should not contain simple placeholders. The input should provide substantial content to make the instruction challenging but should ideally not exceed 100 words.
8. Not all instructions require input. For example, when an instruction asks about some general information, "what is the highest peak in the world", it is not necessary to provide a specific context. In this case, we simply put "<noinput>" in the input field.
9. The output should be an appropriate response to the instruction and the input. Make sure the output is less than 100 words.

List of {tasks} tasks:
"""  # noqa: E501  (Stanford Alpaca's prompt.txt, numbered consistently)

BLACKLIST = tuple(SELF_INSTRUCT_BLACKLIST)
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b", re.I)
_HEADER = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:(?:task[ \t]*)?(\d+)[ \t]*[.):][ \t]*)?"
    r"[*_]*(instruction|input|output)[*_]*[ \t]*:[*_]*[ \t]*",
    re.I | re.M,
)
# Sampling defaults by backend, used where the caller gives none. Hosted models get Stanford Alpaca's
# settings (text-davinci-003: temperature 1.0, top-p 1.0, 3,072 tokens for 20 tasks). A 135M local
# model loses the numbered format at temperature 1.0 and degenerates into loops after two or three
# items, so it samples cooler and stops sooner (measured on the 175 seeds: 0.7/0.9/256 tokens gave
# 11 new tasks from 8 requests where 1.0/1.0/384 gave 1).
SAMPLING_DEFAULTS = {
    "local": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256},
    "openai": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072},
}


def sampling_for(
    backend: str, temperature: float | None = None, top_p: float | None = None, max_tokens: int | None = None
) -> dict[str, Any]:
    """The backend's sampling defaults with the caller's explicit values on top."""
    given = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    defaults = SAMPLING_DEFAULTS.get(backend, SAMPLING_DEFAULTS["openai"])
    return {k: defaults[k] if v is None else v for k, v in given.items()}


INCOMPLETE = ("truncated", "missing_instruction", "missing_output")
_NO_INPUT = {"<noinput>", "<no input>", "noinput", "no input", "n/a", "none", "<none>", "-", ""}


@dataclass(frozen=True)
class SelfInstructConfig:
    """Everything that determines a run's requests and decisions (and so its checkpoints)."""

    n: int = 200
    seed: int = 0
    examples: int = 3
    tasks_per_request: int = 20
    requests_per_round: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024
    rouge_threshold: float = 0.7
    min_words: int = 3
    max_words: int = 150
    reject_programs: bool = True
    embedding_threshold: float | None = 0.95
    max_requests: int | None = None
    max_tokens_total: int | None = None
    max_seconds: float | None = None
    max_rounds: int = 100

    def decisions(self) -> dict[str, Any]:
        """The fields that shape requests and filtering (budgets only decide when to stop)."""
        skip = {"max_requests", "max_tokens_total", "max_seconds", "max_rounds", "n"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass
class Generation:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None


class Generator(Protocol):
    """A backend: one generation per prompt, in order."""

    model: str

    def generate(self, prompts: list[str], seeds: list[int], config: SelfInstructConfig) -> list[Generation]: ...

    def usage(self) -> dict[str, Any]: ...


def _from_reply(reply: ChatReply) -> Generation:
    if reply.error is not None:
        return Generation("", None, error=reply.error)
    return Generation(
        reply.text or "", reply.finish_reasons[0], reply.prompt_tokens, reply.completion_tokens, reply.cached
    )


class OpenAIGenerator:
    """Any OpenAI-compatible endpoint through :class:`curate.llm.chat.ChatClient`.

    ``api="chat"`` sends the prompt as one user message (hosted chat models); ``completions``
    sends it as text to continue (base models, ``curate serve-lm``).
    """

    def __init__(self, client: ChatClient, api: str = "chat") -> None:
        if api not in ("chat", "completions"):
            raise CurateError(f"--api must be chat or completions, not {api!r}")
        self.client = client
        self.api = api
        self.model = client.model

    def generate(self, prompts: list[str], seeds: list[int], config: SelfInstructConfig) -> list[Generation]:
        sampling = {
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_tokens,
        }
        if self.api == "chat":
            requests = [
                ChatRequest.chat([{"role": "user", "content": p}], seed=s, **sampling)
                for p, s in zip(prompts, seeds, strict=True)
            ]
        else:
            requests = [ChatRequest(prompt=p, seed=s, **sampling) for p, s in zip(prompts, seeds, strict=True)]
        return [_from_reply(r) for r in self.client.complete_many(requests)]

    def usage(self) -> dict[str, Any]:
        return {**self.client.usage.as_dict(), "cost_usd": self.client.cost()}


class LocalGenerator:
    """A Hugging Face causal LM in this process (GPU when present), prompts batched (a round per batch by default).

    Replies are cached like the HTTP backend's, keyed by the model's path, the prompt, the
    sampling parameters and the batch's seed, so a resumed run regenerates nothing.
    """

    def __init__(
        self, model: str | None = None, device: str | None = None, batch_size: int | None = None, cache_dir=None
    ):
        from curate.llm.lm import load_lm

        self.lm = load_lm(model, device=device)
        self.model = self.lm.name
        self.batch_size = batch_size
        self.cache = ReplyCache(cache_dir or default_cache_dir())
        self.counts: Counter[str] = Counter()

    def generate(self, prompts: list[str], seeds: list[int], config: SelfInstructConfig) -> list[Generation]:
        from curate.llm.generate import generate_batch

        out: list[Generation | None] = [None] * len(prompts)
        size = self.batch_size or max(len(prompts), 1)
        for start in range(0, len(prompts), size):
            batch = list(range(start, min(start + size, len(prompts))))
            batch_seed = seeds[batch[0]]
            keys = [
                ChatRequest(
                    prompt=prompts[i],
                    temperature=config.temperature,
                    top_p=config.top_p,
                    max_tokens=config.max_tokens,
                    seed=batch_seed,
                ).key(f"local:{self.lm.path}:batch-of-{len(batch)}")
                for i in batch
            ]
            cached = [self.cache.get(k) for k in keys]
            if all(c is not None for c in cached):
                for i, entry in zip(batch, cached, strict=True):
                    out[i] = _from_reply(reply_from_cache(entry))
                self.counts["cache_hits"] += len(batch)
                continue
            made = generate_batch(
                self.lm,
                [prompts[i] for i in batch],
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                seed=batch_seed,
                batch_size=len(batch),
            )
            for i, key, (one,) in zip(batch, keys, made, strict=True):
                reply = ChatReply([one.text], [one.finish_reason], one.prompt_tokens, one.completion_tokens)
                self.cache.put(key, {"prompt_sha256": key}, reply)
                out[i] = _from_reply(reply)
                self.counts["requests"] += 1
                self.counts["prompt_tokens"] += one.prompt_tokens
                self.counts["completion_tokens"] += one.completion_tokens
        return out  # type: ignore[return-value]

    def usage(self) -> dict[str, Any]:
        keys = ("requests", "cache_hits", "prompt_tokens", "completion_tokens")
        return {**{k: self.counts.get(k, 0) for k in keys}, "device": self.lm.device}


def encode_prompt(tasks: list[dict[str, str]], tasks_per_request: int) -> str:
    """Alpaca's generation prompt: the requirements, the examples as numbered items, the next number open."""
    prompt = PROMPT_HEADER.format(tasks=tasks_per_request)
    for k, task in enumerate(tasks, 1):
        instruction = re.sub(r"\s+", " ", task[INSTRUCTION]).strip().rstrip(":")
        given = task[INPUT] or "<noinput>"
        prompt += f"###\n{k}. Instruction: {instruction}\n{k}. Input:\n{given}\n{k}. Output:\n{task[OUTPUT]}\n"
    return prompt + f"###\n{len(tasks) + 1}. Instruction:"


@dataclass
class Parsed:
    """A parsed candidate, or a piece of a reply that is not one (``problem`` says why)."""

    instruction: str
    input: str
    output: str
    raw: str
    problem: str | None = None


def parse_tasks(text: str, first_number: int, finish_reason: str | None, continued: bool = True) -> list[Parsed]:
    """Split a reply into tasks, tolerating numbering drift, missing inputs and a cut-off end.

    ``continued``: the reply continues a prompt that ended with ``N. Instruction:`` (so its
    first task's header is implied). Items are delimited by ``Instruction`` headers (numbered
    or not) and ``###``; a missing ``Input`` is an empty input; ``<noinput>`` means none; the last
    item of a reply cut off by the token limit is ``truncated``. Returns no items when the reply
    holds no header at all (the caller keeps it as an unparsable reject).
    """
    if continued and not _HEADER.match(text.lstrip()):
        text = f"{first_number}. Instruction: {text.lstrip()}"
    headers = list(_HEADER.finditer(text))
    items: list[dict[str, Any]] = []
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        value = text[header.end() : end]
        kind = header.group(2).lower()
        if kind == "instruction" or not items or kind in items[-1]["fields"]:
            items.append({"fields": {}, "start": header.start(), "end": end})
        items[-1]["fields"][kind] = value
        items[-1]["end"] = end
    out = []
    for k, item in enumerate(items):
        fields = {name: _clean(value) for name, value in item["fields"].items()}
        raw = text[item["start"] : item["end"]].strip()
        instruction, output = fields.get("instruction", ""), fields.get("output", "")
        given = fields.get("input", "")
        given = "" if given.lower() in _NO_INPUT else given
        problem = None
        if k == len(items) - 1 and finish_reason == "length":
            problem = "truncated"
        elif not instruction:
            problem = "missing_instruction"
        elif "output" not in fields or not output:
            problem = "missing_output"
        out.append(Parsed(instruction, given, output, raw, problem))
    return out


def _clean(value: str) -> str:
    value = value.split("###")[0]
    return value.strip().strip("*_").strip()


def rule_reason(instruction: str, config: SelfInstructConfig) -> tuple[str | None, str | None]:
    """The cheap filters, in order: length in words, blacklist, programs, first character."""
    words = len(instruction.split())
    if words < config.min_words:
        return "too_short", f"{words} words < {config.min_words}"
    if words > config.max_words:
        return "too_long", f"{words} words > {config.max_words}"
    hit = _BLACKLIST_RE.search(instruction)
    if hit:
        return "blacklist", f"contains {hit.group(1).lower()!r}"
    if config.reject_programs and instruction.lower().startswith("write a program"):
        return "write_a_program", None
    first = instruction[0]
    if first in string.punctuation or not first.isascii() or not first.isalpha():
        return "non_letter_start", f"starts with {first!r}"
    return None, None


def request_seed(seed: int, round_: int, request: int) -> int:
    return int(hashlib.sha256(f"{seed}:{round_}:{request}".encode()).hexdigest()[:8], 16)


class NoveltyEmbedder:
    """Cosine novelty against the pool with the embedding engine (all-MiniLM-L6-v2 by default)."""

    def __init__(self, model: str | None = None) -> None:
        from curate.embed.encoder import Embedder, EmbedSettings

        self.embedder = Embedder(EmbedSettings(model=model))
        self.name = self.embedder.settings.model_name()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)


@dataclass
class Pool:
    """The instructions new candidates must differ from: the seeds, then every accepted task."""

    ids: list[str] = field(default_factory=list)
    encoded: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None


def load_seeds(spec: str) -> pl.DataFrame:
    """Seed tasks: a registry name (``alpaca-seed-tasks``) or any file curate can ingest (JSONL tasks)."""
    from curate.io.ingest import Ingest

    frames = [batch for batch, _ in Ingest([spec]).batches()]
    seeds = pl.concat(frames) if frames else pl.DataFrame()
    if seeds.height == 0:
        raise CurateError(f"{spec}: no seed tasks read")
    return seeds.filter(pl.col(INSTRUCTION).is_not_null())


class SelfInstruct:
    """The round loop over one output folder's checkpoints."""

    def __init__(
        self,
        seeds: pl.DataFrame,
        generator: Generator,
        config: SelfInstructConfig,
        checkpoint_dir: Path,
        fingerprint: str,
        novelty: NoveltyEmbedder | None = None,
        progress: bool = True,
    ) -> None:
        self.seeds = seeds
        self.generator = generator
        self.config = config
        self.dir = Path(checkpoint_dir)
        self.fingerprint = fingerprint
        self.novelty = novelty
        self.progress = progress
        self.codes = TokenCodes()
        self.pool = Pool()
        self.rounds: list[pl.DataFrame] = []
        self.state: dict[str, Any] = {"round": 0, "seconds": 0.0, "requests": 0, "tokens": 0, "stopped_by": None}
        self._seed_tasks = seeds.select(SOURCE_ID, INSTRUCTION, INPUT, OUTPUT).to_dicts()
        self._add_to_pool(seeds[SOURCE_ID].to_list(), seeds[INSTRUCTION].to_list())

    @property
    def accepted(self) -> int:
        return sum(int(r["accepted"].sum()) for r in self.rounds)

    def _add_to_pool(self, ids: list[str], instructions: list[str]) -> None:
        self.pool.ids.extend(ids)
        self.pool.encoded.extend(self.codes.encode_texts(instructions))
        if self.novelty is not None and instructions:
            vectors = self.novelty.encode(instructions)
            self.pool.vectors = vectors if self.pool.vectors is None else np.vstack([self.pool.vectors, vectors])

    def resume(self) -> bool:
        """Load finished rounds from the checkpoint folder when it belongs to this same run."""
        path = self.dir / "state.json"
        if not path.exists():
            return False
        state = json.loads(path.read_text())
        if state.get("fingerprint") != self.fingerprint:
            return False
        for r in range(1, state["round"] + 1):
            frame = pl.read_parquet(self.dir / f"round-{r:04d}.parquet")
            self.rounds.append(frame)
            kept = frame.filter(pl.col("accepted"))
            self._add_to_pool(kept[SOURCE_ID].to_list(), kept[INSTRUCTION].to_list())
        self.state.update({k: state[k] for k in self.state if k in state})
        return True

    def _budget_left(self) -> str | None:
        c, s = self.config, self.state
        if self.accepted >= c.n:
            return "n_reached"
        if c.max_requests is not None and s["requests"] >= c.max_requests:
            return "max_requests"
        if c.max_tokens_total is not None and s["tokens"] >= c.max_tokens_total:
            return "max_tokens"
        if c.max_seconds is not None and s["seconds"] >= c.max_seconds:
            return "max_seconds"
        if s["round"] >= c.max_rounds:
            return "max_rounds"
        return None

    def run(self) -> dict[str, Any]:
        from curate.run.progress import Progress

        meter = Progress("self-instruct", unit="accepted tasks", total=self.config.n, enabled=self.progress)
        meter.advance(self.accepted)
        while (stop := self._budget_left()) is None:
            started = time.monotonic()
            frame = self.run_round(self.state["round"] + 1)
            self.state["round"] += 1
            self.state["seconds"] += time.monotonic() - started
            self.state["requests"] += int(frame["request"].n_unique())
            self.state["tokens"] += int(frame.unique("request")["completion_tokens"].sum() or 0)
            self._checkpoint(frame)
            meter.advance(int(frame["accepted"].sum()))
        meter.close()
        self.state["stopped_by"] = stop
        return self.state

    def _checkpoint(self, frame: pl.DataFrame) -> None:
        from curate.io.shards import write_parquet

        write_parquet(frame, self.dir / f"round-{self.state['round']:04d}.parquet")
        write_json(self.dir / "state.json", {"fingerprint": self.fingerprint, **self.state}, durable=False)
        self.rounds.append(frame)

    def prompts(self, round_: int) -> tuple[list[str], list[list[str]], list[int]]:
        c = self.config
        prompts, chosen_ids, seeds = [], [], []
        for request in range(c.requests_per_round):
            rng = random.Random(request_seed(c.seed, round_, request))
            chosen = rng.sample(self._seed_tasks, min(c.examples, len(self._seed_tasks)))
            prompts.append(encode_prompt(chosen, c.tasks_per_request))
            chosen_ids.append([t[SOURCE_ID] for t in chosen])
            seeds.append(request_seed(c.seed, round_, request) % (2**31))
        return prompts, chosen_ids, seeds

    def run_round(self, round_: int) -> pl.DataFrame:
        """Generate, parse and filter one round; the frame holds every candidate with its decision."""
        c = self.config
        prompts, chosen_ids, seeds = self.prompts(round_)
        replies = self.generator.generate(prompts, seeds, c)
        continued = not isinstance(self.generator, OpenAIGenerator) or self.generator.api == "completions"
        rows: list[dict[str, Any]] = []
        for request, (reply, ids) in enumerate(zip(replies, chosen_ids, strict=True)):
            base = {
                "round": round_,
                "request": request,
                "seed_task_ids": json.dumps(ids),
                "finish_reason": reply.finish_reason,
                "completion_tokens": reply.completion_tokens,
            }
            items = [] if reply.error else parse_tasks(reply.text, c.examples + 1, reply.finish_reason, continued)
            if not items:
                why = reply.error or ("empty reply" if not reply.text.strip() else "no Instruction/Output items")
                rows.append({**base, "task": 0, "raw": reply.text, "reason": "unparsable", "detail": why})
            for k, item in enumerate(items):
                row = {**base, "task": k, "raw": item.raw, INSTRUCTION: item.instruction}
                row.update({INPUT: item.input, OUTPUT: item.output, "reason": item.problem, "detail": None})
                if item.problem is None:
                    row["reason"], row["detail"] = rule_reason(item.instruction, c)
                rows.append(row)
        frame = pl.DataFrame(rows, infer_schema_length=None)
        for column in (INSTRUCTION, INPUT, OUTPUT, "detail", "reason"):
            if column not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
        return self._similarity(frame)

    def _similarity(self, frame: pl.DataFrame) -> pl.DataFrame:
        """ROUGE-L (and cosine) against the pool and the candidates accepted before in this round."""
        c = self.config
        open_ = frame["reason"].is_null().to_numpy()
        idx = np.flatnonzero(open_)
        instructions = [frame[INSTRUCTION][int(i)] for i in idx]
        encoded = self.codes.encode_texts(instructions)
        to_pool, where = nearest(encoded, self.pool.encoded)
        within = rouge_l_matrix(encoded, encoded)
        cos_pool = cos_where = within_cos = None
        if self.novelty is not None and instructions:
            vectors = self.novelty.encode(instructions)
            sims = vectors @ self.pool.vectors.T
            cos_pool, cos_where = sims.max(axis=1), sims.argmax(axis=1)
            within_cos = vectors @ vectors.T
        n = frame.height
        rouge_best = np.full(n, np.nan)
        rouge_with: list[str | None] = [None] * n
        cos_best = np.full(n, np.nan)
        reasons = frame["reason"].to_list()
        details = frame["detail"].to_list()
        accepted = np.zeros(n, dtype=bool)
        taken: list[int] = []
        new_ids = [f"r{r:04d}-q{q:03d}-t{t:02d}" for r, q, t in frame.select("round", "request", "task").rows()]
        total = self.accepted
        for j, i in enumerate(idx):
            best, with_ = float(to_pool[j]), self.pool.ids[int(where[j])] if where[j] >= 0 else None
            for t in taken:
                if within[j, t] > best:
                    best, with_ = float(within[j, t]), new_ids[int(idx[t])]
            rouge_best[i], rouge_with[i] = best, with_
            if cos_pool is not None:
                cbest, cwith = float(cos_pool[j]), self.pool.ids[int(cos_where[j])]
                for t in taken:
                    if within_cos[j, t] > cbest:
                        cbest, cwith = float(within_cos[j, t]), new_ids[int(idx[t])]
                cos_best[i] = cbest
            if best >= c.rouge_threshold:
                reasons[i], details[i] = "rouge_similar", f"ROUGE-L {best:.4f} with {with_}"
            elif cos_pool is not None and c.embedding_threshold is not None and cos_best[i] >= c.embedding_threshold:
                reasons[i], details[i] = "embedding_similar", f"cosine {cos_best[i]:.4f} with {cwith}"
            elif total >= c.n:
                reasons[i], details[i] = "beyond_n", f"{c.n} tasks already accepted"
            else:
                accepted[i] = True
                taken.append(j)
                total += 1
        frame = frame.with_columns(
            pl.Series(SOURCE_ID, new_ids, dtype=pl.String),
            pl.Series("reason", reasons, dtype=pl.String),
            pl.Series("detail", details, dtype=pl.String),
            pl.Series("accepted", accepted),
            pl.Series("rouge_l_nearest", rouge_best, dtype=pl.Float64).fill_nan(None),
            pl.Series("rouge_l_nearest_id", rouge_with, dtype=pl.String),
            pl.Series("embedding_nearest_cosine", cos_best, dtype=pl.Float64).fill_nan(None),
        )
        kept = frame.filter(pl.col("accepted"))
        self._add_to_pool(kept[SOURCE_ID].to_list(), kept[INSTRUCTION].to_list())
        return frame


def _records(frame: pl.DataFrame, model: str, backend: str) -> pl.DataFrame:
    """Candidates as records of the one record model; unparsable replies as text records of the raw reply."""
    parsed = frame[INSTRUCTION].is_not_null()
    # An incomplete item's text is what the model wrote, headers and all: its fields may be empty.
    whole = parsed & ~frame["reason"].is_in(INCOMPLETE).fill_null(False)
    metas, ids = [], []
    for row in frame.iter_rows(named=True):
        meta = {
            "generator_model": model,
            "backend": backend,
            "round": row["round"],
            "request": row["request"],
            "seed_task_ids": json.loads(row["seed_task_ids"]),
            "rouge_l_nearest": row["rouge_l_nearest"],
            "rouge_l_nearest_id": row["rouge_l_nearest_id"],
            "embedding_nearest_cosine": row["embedding_nearest_cosine"],
        }
        metas.append(json.dumps(meta, sort_keys=True))
        if row[INSTRUCTION] is not None:
            ids.append(content_id(KIND_INSTRUCTION, row[INSTRUCTION], row[INPUT], row[OUTPUT]))
        else:
            ids.append(content_id(KIND_TEXT, text=row["raw"] or ""))
    derived = pl.concat_str(
        [pl.col(INSTRUCTION), *(pl.when(pl.col(c) != "").then(pl.col(c)) for c in (INPUT, OUTPUT))],
        separator="\n\n",
        ignore_nulls=True,
    )
    out = frame.with_columns(
        pl.Series(ID, ids, dtype=pl.String),
        pl.lit(SOURCE).alias("source"),
        pl.when(parsed).then(pl.lit(KIND_INSTRUCTION)).otherwise(pl.lit(KIND_TEXT)).alias("kind"),
        pl.when(whole).then(derived).otherwise(pl.col("raw")).alias("text"),
        pl.lit(LICENSE).alias("license"),
        pl.Series(META, metas, dtype=pl.String),
    )
    return out.with_columns(_unique_ids(out[ID]))


def _unique_ids(ids: pl.Series) -> pl.Series:
    from curate.records.ids import UniqueIds

    return UniqueIds()(ids)


def stage_result(rounds: list[pl.DataFrame], model: str, backend: str, params: dict[str, Any]):
    """The run's one stage: accepted candidates kept, every other candidate a reject with its reason."""
    from curate.records.schema import empty_records, rejects_from
    from curate.stages.result import StageResult

    if not rounds:
        empty = empty_records()
        return StageResult(STAGE, params, 0, empty, rejects_from(empty, STAGE, "none"))
    frame = _records(pl.concat(rounds, how="diagonal_relaxed"), model, backend)
    kept = frame.filter(pl.col("accepted"))
    dropped = frame.filter(~pl.col("accepted"))
    rejects = rejects_from(dropped, STAGE, pl.col("reason"), pl.col("detail"))
    annotations = frame.select(
        ID,
        SOURCE_ID,
        "round",
        "request",
        "seed_task_ids",
        "rouge_l_nearest",
        "rouge_l_nearest_id",
        "embedding_nearest_cosine",
        "finish_reason",
        pl.col("raw").alias("raw_item"),
        pl.lit(model).alias("generator_model"),
    )
    result = StageResult(STAGE, params, frame.height, conform(kept), rejects, annotations)
    return result


def resume_fingerprint(
    config: SelfInstructConfig, seed_hashes: list[str], backend: str, model: str, extra: dict
) -> str:
    """What checkpoints must match to be reused: the decisions, the seeds, the generator (not budgets)."""
    blob = {"config": config.decisions(), "seeds": seed_hashes, "backend": backend, "model": model, **extra}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grow(
    seeds_spec: str,
    generator: Generator,
    config: SelfInstructConfig,
    out: Path | str,
    backend: str,
    novelty: NoveltyEmbedder | None = None,
    invocation: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    publish: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run self-instruct into the run directory ``out``; returns (manifest, stats).

    ``publish=False`` leaves a run staged for a URL to the caller, who writes the card first.

    Raises :class:`curate.run.pipeline.UpToDate` when ``out`` already holds this exact run.
    """
    from curate.io.ingest import Ingest
    from curate.run.pipeline import RunWriter

    job = Ingest([seeds_spec])
    frames = [batch for batch, _ in job.batches()]
    seeds = pl.concat(frames).filter(pl.col(INSTRUCTION).is_not_null()) if frames else pl.DataFrame()
    if seeds.height == 0:
        raise CurateError(f"{seeds_spec}: no seed tasks read")
    extra = {"api": getattr(generator, "api", None), "novelty": novelty.name if novelty else None}
    plan = {"seeds": seeds_spec, "backend": backend, "model": generator.model, "config": asdict(config), **extra}
    writer = RunWriter(out, "self-instruct", plan, invocation=invocation, overwrite=overwrite, publish=publish)
    writer.begin(job.inputs)
    hashes = [entry["sha256"] for entry in job.inputs]
    loop = SelfInstruct(
        seeds,
        generator,
        config,
        writer.run.root / ".checkpoints" / "self-instruct",
        resume_fingerprint(config, hashes, backend, generator.model, extra),
        novelty=novelty,
        progress=progress,
    )
    if loop.resume():
        import sys

        print(f"resuming {out} after round {loop.state['round']} ({loop.accepted} tasks accepted)", file=sys.stderr)
    state = loop.run()
    result = stage_result(loop.rounds, generator.model, backend, plan)
    reasons = Counter(result.rejects["reason"].to_list())
    candidates = max(result.n_in, 1)
    result.stats = {
        "accepted": result.kept.height,
        "candidates": result.n_in,
        "seeds": seeds.height,
        "rounds": state["round"],
        "stopped_by": state["stopped_by"],
        "seconds": round(state["seconds"], 2),
        "requests": state["requests"],
        "completion_tokens": state["tokens"],
        "acceptance_rate": round(result.kept.height / candidates, 4),
        "rate_by_reason": {k: round(v / candidates, 4) for k, v in sorted(reasons.items())},
        "generator": generator.usage(),
    }
    manifest = writer.finish(writer.add(result))
    return manifest, result.stats


def summary_lines(stats: dict[str, Any]) -> str:
    usage = stats["generator"]
    reasons = ", ".join(f"{k} {v:.1%}" for k, v in stats["rate_by_reason"].items()) or "none"
    cost = usage.get("cost_usd")
    return (
        f"self-instruct: {stats['accepted']:,} tasks accepted of {stats['candidates']:,} candidates "
        f"({stats['acceptance_rate']:.1%}) in {stats['rounds']} round(s), {stats['seconds']:.0f} s; "
        f"stopped by {stats['stopped_by']}\n"
        f"self-instruct: rejected by reason (share of candidates): {reasons}\n"
        f"self-instruct: {stats['requests']:,} requests, {stats['completion_tokens']:,} completion tokens in all; "
        f"this invocation: {usage.get('requests', 0):,} sent, {usage.get('cache_hits', 0):,} from the reply cache, "
        f"{usage.get('prompt_tokens', 0):,} prompt + {usage.get('completion_tokens', 0):,} completion tokens"
        + (f", ${cost:.6f}" if cost is not None else "")
    )
