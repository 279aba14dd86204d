"""Batched sampling engines (transformers everywhere, vLLM where installed)."""

from safealign.generation.engine import (
    OFFLINE_BATCH_SIZE,
    Engine,
    Generation,
    HFEngine,
    SamplingConfig,
    build_engine,
    render_prompt,
)

__all__ = ["OFFLINE_BATCH_SIZE", "Engine", "Generation", "HFEngine", "SamplingConfig", "build_engine", "render_prompt"]
