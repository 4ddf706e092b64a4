"""Scorers: annotation columns that rank records (embeddings, quality probe, LLM judge, IFD, semantic dedup).
They import the bottom layers, ``curate.embed`` and ``curate.llm``."""
