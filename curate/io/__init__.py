"""Getting data in and out: readers and formats, the dataset catalog, ingest, Parquet shards,
atomic writes and model resolution. Imports ``curate.errors`` and ``curate.records`` only."""
