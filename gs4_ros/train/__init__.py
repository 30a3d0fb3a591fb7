"""Training of the networks (fit), their ablation table (ablation) and the model card."""
