"""What a stage is: the result it hands back, the Filter base class, and the registry that finds
filters and scorers by name. Imports ``curate.errors`` and ``curate.records`` only."""
