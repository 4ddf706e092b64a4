"""Language models: the local causal LM, batched generation, the OpenAI-compatible chat client and
server. Imports the bottom layers only."""
