"""Typed records, file loaders, named datasets and leak-free splits."""
