"""IFD with the real local SmolLM2-135M-Instruct on a few real records."""

from __future__ import annotations

import polars as pl

from curate.llm.lm import load_lm
from curate.records.schema import conform
from scorers.ifd import IfdParams, ifd_scores


def pairs() -> pl.DataFrame:
    rows = [
        ("Translate to French: Good morning.", "", "Bonjour."),
        ("List three primary colors.", "", "Red, blue and yellow."),
        ("Add the numbers.", "2 and 3", "5"),
        ("Say something.", "", ""),  # empty response: no score, never a crash
    ]
    return conform(
        pl.DataFrame(
            {
                "id": [f"r{i}" for i in range(len(rows))],
                "kind": ["instruction"] * len(rows),
                "instruction": [r[0] for r in rows],
                "input": [r[1] for r in rows],
                "output": [r[2] for r in rows],
                "text": ["\n\n".join(r) for r in rows],
            }
        )
    )


def test_ifd_is_a_ratio_of_real_losses_and_deterministic() -> None:
    lm = load_lm()
    records = pairs()
    first = ifd_scores(records, lm, IfdParams(batch_size=2))
    again = ifd_scores(records, lm, IfdParams(batch_size=2))
    assert first.equals(again)
    assert first["ifd"].to_list()[3] is None and first["loss_response"].to_list()[3] is None
    scored = first.head(3)
    assert (scored["loss_conditioned"] > 0).all() and (scored["loss_response"] > 0).all()
    ratio = scored["loss_conditioned"] / scored["loss_response"]
    assert ((scored["ifd"] - ratio).abs() < 1e-9).all()
    # The instruction makes "Bonjour." far easier to predict than it is alone.
    assert scored["ifd"][0] < 1.0
