"""Data: offline and tfds image sets (datasets.py), tokenized TFRecord shards (tokenized.py)."""
