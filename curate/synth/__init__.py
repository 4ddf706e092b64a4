"""Growing data: self-instruct and the ROUGE-L novelty filter it needs. May import the bottom layers,
embed, llm, filters and selection."""
