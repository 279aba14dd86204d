"""Batched sampling engines (transformers everywhere, vLLM where installed)."""

from safealign.generation.engine import (
    Engine,
    Generation,
    HFEngine,
    SamplingConfig,
    build_engine,
    render_prompt,
)

__all__ = ["Engine", "Generation", "HFEngine", "SamplingConfig", "build_engine", "render_prompt"]
