"""Dataset cards: a Hugging Face README with its figures, read from a run directory.
Imports the bottom layers (errors, records, io, run) only, so every stage and flow can write one."""
