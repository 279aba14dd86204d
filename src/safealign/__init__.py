"""safealign: constrained fine-tuning and constrained decoding for safer language models."""

__version__ = "0.1.0"
