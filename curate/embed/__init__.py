"""Sentence embeddings and vector search: the Embedder with its on-disk cache, and the faiss index.
Shared by scorers, selection and self-instruct; imports the bottom layers only."""
