"""Filters: one small class a file (language, length, hygiene, PII, quality heuristics), registered by name.
Each imports the bottom layers only (errors, records, io, stages, run)."""
