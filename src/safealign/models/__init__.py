"""Model registry (embedded defaults pulled from PyPI wheels) and loading of any HF model."""
