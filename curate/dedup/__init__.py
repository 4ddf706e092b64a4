"""Deduplication stages: exact (normalized hash) now, MinHash LSH near-duplicates next."""
