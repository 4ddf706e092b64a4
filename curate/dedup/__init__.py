"""Deduplication stages: exact (normalized hash) and MinHash LSH near-duplicates with an incremental index.
Imports the bottom layers (errors, records, io, stages, run) only."""
