"""IFEval with lm-eval's checkers: real prompts from the registered file, hand-written responses with
known strict and loose outcomes, offline sentence counting, bad input files, and cached generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.errors import CurateError
from curate.training import ifeval


def _prompts(*keys: int) -> list[ifeval.Prompt]:
    by_key = {p.key: p for p in ifeval.load_prompts()}
    return [by_key[k] for k in keys]


def test_all_541_prompts_load_and_every_checker_runs_offline() -> None:
    prompts = ifeval.load_prompts()
    assert len(prompts) == 541 and len({p.key for p in prompts}) == 541
    ids = {i for p in prompts for i in p.instruction_id_list}
    assert len(ids) == 25
    assert ifeval.unavailable(prompts) == {}
    subset = ifeval.load_prompts(n=12)
    assert len(subset) == 12 and subset == ifeval.load_prompts(n=12)
    assert [p.key for p in subset] != [p.key for p in prompts[:12]]


def test_strict_and_loose_outcomes_of_known_responses() -> None:
    json_prompt, lower, sentences, three = _prompts(1094, 202, 3739, 1000)
    cases = [
        # A bare JSON block follows the JSON instruction, strictly.
        (json_prompt, '```json\n{"moms": ["Marge Simpson"]}\n```', (True, True)),
        # A chatty first line breaks strict JSON; loose drops the first line and passes.
        (json_prompt, 'Here you go:\n{"moms": ["Marge Simpson"]}', (False, True)),
        (lower, "etching is another word for it.", (True, True)),
        (lower, "Etching.", (False, False)),
        # Punkt knows "Mr." and "Dr." are abbreviations: two sentences, fewer than 3.
        (sentences, "Mr. Green is the monster. Dr. Jones agrees with that.", (True, True)),
        (sentences, "It is envy. It is green. It is jealous.", (False, False)),
    ]
    for prompt, response, (strict, loose) in cases:
        result = ifeval.score([prompt], [response])
        assert (result["prompt_strict"] == 100.0, result["prompt_loose"] == 100.0) == (strict, loose), response

    # Key 1000: no commas, 3 highlighted sections, at least 300 words: two of three followed.
    text = "*part one* then *part two* and *part three* end"
    result = ifeval.score([three], [text])
    assert result["per_prompt"][0]["strict"] == [True, True, False]
    assert result["prompt_strict"] == 0.0 and result["inst_strict"] == pytest.approx(200 / 3, abs=1e-3)
    both = ifeval.score([three, lower], [text, "all lowercase here."])
    assert both["prompt_strict"] == 50.0 and both["inst_strict"] == 75.0 and both["instructions"] == 4
    assert ifeval.score([lower], [""])["prompt_loose"] == 0.0


def test_bad_input_files_name_file_line_and_id(tmp_path: Path) -> None:
    good = Path(ifeval.ifeval_path()).read_text().splitlines()[0]
    row = json.loads(good)
    bad = tmp_path / "ifeval.jsonl"
    bad.write_text(good + "\n" + json.dumps({**row, "instruction_id_list": ["punctuation:no_semicolons"]}) + "\n")
    with pytest.raises(CurateError, match=r"ifeval.jsonl:2: unknown instruction id 'punctuation:no_semicolons'"):
        ifeval.load_prompts(bad)
    bad.write_text(good + "\n{not json\n")
    with pytest.raises(CurateError, match=r"ifeval.jsonl:2: not an IFEval prompt"):
        ifeval.load_prompts(bad)
    with pytest.raises(CurateError, match="no IFEval input file"):
        ifeval.load_prompts(tmp_path / "missing.jsonl")


def test_generations_are_cached_per_adapter_and_prompt_and_resume_after_a_kill(tmp_path: Path) -> None:
    from curate.training.ablate import ci_source
    from curate.training.evaluate import GENERATIONS, GenerationSettings, adapter_generations, evaluate_ifeval
    from curate.training.trainer import TrainConfig, train

    source = ci_source(tmp_path / "data", progress=False)
    out = tmp_path / "train"
    train(source, out, TrainConfig(max_len=32, batch_size=2, grad_accum=1, max_steps=1, eval_n=2), progress=False)
    prompts = [p.prompt for p in ifeval.load_prompts(n=3)]
    settings = GenerationSettings(max_new_tokens=4, batch_size=1)
    first = adapter_generations(out, prompts, settings, progress=False)
    cache = out / GENERATIONS
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 3 and {r["instruction"] for r in rows} == set(prompts)
    assert all(r["template"] == "alpaca" and r["max_new_tokens"] == 4 for r in rows)

    # A rerun generates nothing: the file is untouched and the answers are the same.
    before = cache.read_bytes()
    assert adapter_generations(out, prompts, settings, progress=False) == first
    assert cache.read_bytes() == before

    # A kill mid-write: one answer lost, the last line torn. The rerun generates exactly the missing one.
    lines = before.decode().splitlines(keepends=True)
    cache.write_text("".join(lines[:2]) + lines[2][:10])
    assert adapter_generations(out, prompts, settings, progress=False) == first
    kept = [json.loads(line) for line in cache.read_text().splitlines()[:2]] + [
        json.loads(cache.read_text().splitlines()[-1])
    ]
    assert len(cache.read_text().splitlines()) == 4 and sorted(r["key"] for r in kept) == sorted(r["key"] for r in rows)

    # Another batch size reuses the cache; the IFEval result sits beside metrics.json.
    result = evaluate_ifeval(out, n=3, settings=GenerationSettings(max_new_tokens=4, batch_size=3), progress=False)
    assert result["prompts"] == 3 and 0.0 <= result["prompt_strict"] <= result["prompt_loose"] <= 100.0
    assert json.loads((out / "ifeval.json").read_text())["per_prompt"][0]["key"] in {
        p.key for p in ifeval.load_prompts(n=3)
    }
    with pytest.raises(CurateError, match="no finished training"):
        adapter_generations(tmp_path, prompts, settings, progress=False)
