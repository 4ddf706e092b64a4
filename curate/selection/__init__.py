"""Choosing a subset from scored records: threshold, top-k, random, longest, diverse and k-center, with
quotas and a report beside a random control. Imports the bottom layers and ``curate.embed``."""
