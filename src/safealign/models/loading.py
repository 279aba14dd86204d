"""Resolve a model reference (registry name, local HF directory or hub id) and load it.

Safetensors only unless the caller opts in, and ``trust_remote_code`` stays off unless asked: a safety
toolkit should not execute a checkpoint's pickles or code by default.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from safealign import hardware
from safealign.models import registry
from safealign.models.registry import ModelError


def resolve(ref: str | Path, *, auto_pull: bool = True) -> str:
    """Map a reference to something ``from_pretrained`` accepts: a local directory or a hub id.

    Embedded names are pulled on first use so every command accepts them transparently.
    """
    ref_s = str(ref)
    canon = registry.canonical_name(ref_s)
    if canon is not None:
        if not registry.is_pulled(canon):
            if not auto_pull:
                raise ModelError(f"'{canon}' is not pulled yet: run `safealign models pull {canon}`")
            registry.pull(canon)
        return str(registry.model_path(canon))
    p = Path(ref_s).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"{p} is not a Hugging Face model directory (no config.json)")
        return str(p)
    if ref_s.count("/") == 1 and not ref_s.startswith((".", "/")):
        return ref_s  # hub id: resolved by transformers (cache, or download where a hub is reachable)
    raise ModelError(f"'{ref_s}' is neither an embedded model ({', '.join(registry.EMBEDDED)}), "
                     "a local directory, nor a hub id (owner/name)")


def load_tokenizer(ref: str | Path, *, trust_remote_code: bool = False, padding_side: str = "left") -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(ref), trust_remote_code=trust_remote_code)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    ref: str | Path,
    *,
    dtype: str = "auto",
    device: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> Any:
    """Load a causal LM in eval mode on ``device`` with the run-time dtype choice of :mod:`hardware`."""
    from transformers import AutoModelForCausalLM

    device = device or hardware.default_device()
    torch_dtype = hardware.resolve_dtype(dtype, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve(ref), dtype=torch_dtype, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
        )
    except OSError as err:
        raise ModelError(f"could not load '{ref}': {err}") from err
    return contiguous_lm_head_input(model.to(device).eval())


def _make_contiguous(module: Any, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def contiguous_lm_head_input(model: Any) -> Any:
    """Feed the output projection a contiguous tensor; returns ``model``.

    ``logits_to_keep`` slices the last hidden states (``h[:, -k:, :]``), a strided view. torch's matmul
    will not fold a non-contiguous 3-D input, so it broadcasts the [V, H] head to [B, H, V] and runs a
    bmm: on SmolLM2 that copies ~450 MB per call, about 1 s on a CPU for each prefill and each training
    forward. Copying the small slice instead is free.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_safealign_contiguous", False):
        head.register_forward_pre_hook(_make_contiguous)
        head._safealign_contiguous = True
    return model


def fingerprint(model: Any) -> str:
    """A short content hash of a model's weights (for caches and certificates)."""
    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        flat = t.float().flatten()
        # Sampling keeps this cheap on 100M+ parameter models while still catching any fine-tune.
        step = max(1, flat.numel() // 4096)
        h.update(flat[::step].contiguous().numpy().tobytes())
        h.update(f"{float(flat.double().sum()):.6e}".encode())
    return h.hexdigest()[:16]


def describe_model_dir(path: str | Path) -> dict:
    meta = Path(path) / "safealign_model.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


__all__ = ["ModelError", "resolve", "load_tokenizer", "load_causal_lm", "contiguous_lm_head_input", "fingerprint", "torch"]
