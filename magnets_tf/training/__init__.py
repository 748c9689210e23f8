"""Training: masking, nested distillation losses, trainer, strategies, callbacks."""
