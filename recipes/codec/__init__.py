"""Codec training: shards, text encoder, losses, the multi-stage task and its entry point."""
