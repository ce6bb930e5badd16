"""Distributed contrastive training (open_clip models) on openwit shards, and zero-shot eval."""
