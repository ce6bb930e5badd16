"""Stage ``balance``: at most ``t`` pairs per query (CLIP's 20,000), deterministic."""
