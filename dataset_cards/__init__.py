"""dataset_cards."""
