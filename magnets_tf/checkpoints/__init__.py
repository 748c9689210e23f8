"""Checkpoint import: official MaskGIT flax msgpack checkpoints, the FID Inception weights."""
