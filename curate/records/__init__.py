"""The record model: the schema every stage shares, stable content ids, text normalization.

Bottom layer: imports only ``curate.errors`` and third-party packages."""
