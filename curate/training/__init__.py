"""Proving it: the LoRA trainer, fixed-model ablations, seed statistics and pairwise judging.
May import the bottom layers, dataset_cards, embed, llm and selection."""
