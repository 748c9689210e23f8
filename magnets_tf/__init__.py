"""magnets_tf: Masked Generative Nested Transformers with decode-time scaling."""
__version__ = "0.1.0"
