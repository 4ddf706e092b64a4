"""A run directory and its books: the manifest, the funnel, the pipeline writer, progress lines and
worker pools. Imports the bottom layers (errors, records, io, stages) only."""
