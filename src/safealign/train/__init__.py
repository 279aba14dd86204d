"""Constrained RL fine-tuning: one trainer, pluggable constraint handlers."""
