"""YAML recipes (the files beside this module) and their typed loader. Above the stages it configures
(dedup, filters, selection); below flows and the CLI."""
