"""Checkpoint import: official MaskGIT flax msgpack checkpoints."""
