"""Dataset cards: valid Hugging Face metadata, loadable with datasets, figures, byte-identical reruns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

from dataset_cards.card import size_category, write_card
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def curated_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("card") / "run"
    recipe = out.parent / "filters.yaml"
    recipe.write_text(
        "filters:\n  - use: language\n    params: {keep: [en]}\n  - use: pii\n    params: {redact: true}\n"
    )
    run_cli("dedup", "--exact", "--near", "social-posts", "--out", str(out.parent / "deduped"), "--threshold", "0.7")
    run_cli("filter", str(out.parent / "deduped"), "--recipe", str(recipe), "--out", str(out))
    assert not (out / "figures").exists()
    assert "wrote" in run_cli("card", str(out)).stdout
    return out


def test_card_validates_and_describes_the_run(curated_run: Path) -> None:
    card = DatasetCard.load(curated_run / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other" and data["language"] == ["en"]
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation"]
    assert data["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    examples = data["dataset_info"]["splits"][0]["num_examples"]
    text = card.text
    for section in (
        "## Dataset summary",
        "## Dataset structure",
        "## Curation rationale",
        "### Funnel",
        "### Duplicate clusters",
        "### Language mix",
        "### What was removed",
        "## Provenance and licensing",
        "## Personal and sensitive information",
        "## How to reproduce",
        "## Datasheet questions",
        "Cannot be answered from the pipeline's records",
    ):
        assert section in text, section
    assert "exact_duplicate" in text and "curate filter" in text
    assert f"{examples:,} records curated from 5,928" in text


def test_run_loads_with_datasets_from_the_card(curated_run: Path) -> None:
    import datasets

    card = DatasetCard.load(curated_run / "README.md")
    loaded = datasets.load_dataset(str(curated_run), split="train")
    assert loaded.num_rows == card.data.to_dict()["dataset_info"]["splits"][0]["num_examples"]


def test_figures_exist_and_are_pngs(curated_run: Path) -> None:
    for name in ("funnel.png", "lengths.png", "clusters.png"):
        data = (curated_run / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name
        assert f"figures/{name}" in (curated_run / "README.md").read_text()


def test_stage_commands_leave_the_figures_to_curate_card(curated_run: Path) -> None:
    deduped = curated_run.parent / "deduped"
    text = (deduped / "README.md").read_text()
    assert "![" not in text and "`curate card RUN` draws them" in text
    assert not (deduped / "figures").exists()
    assert "### Duplicate clusters" in text and "### Funnel" in text


def test_regenerating_is_byte_identical(curated_run: Path) -> None:
    def digest() -> dict[str, str]:
        files = [curated_run / "README.md", *sorted((curated_run / "figures").glob("*.png"))]
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    before = digest()
    write_card(curated_run)
    assert digest() == before
    assert "wrote" in run_cli("card", str(curated_run)).stdout
    assert digest() == before


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 52002, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]
