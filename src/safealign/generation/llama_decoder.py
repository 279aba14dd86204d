"""A lean prefill/decode forward for Llama-architecture models, used by :class:`HFEngine` on CPU.

Why: decoding a 135M model step by step on two cores is bound by per-operator overhead and by streaming the
weights from memory, not by FLOPs. transformers' forward spends about half of each decode step in Python
and small tensor ops (cache bookkeeping, mask building, separate q/k/v and gate/up projections). This path
runs the same math with fused q|k|v and gate|up projections and a preallocated KV cache: SmolLM2-135M in
bf16 samples 129 against 95 tok/s at batch 8 and 260 against 211 at batch 32 (``bench/generation.py``); a decode
step also attends with the query heads of each KV head folded together (see ``_forward``).

It reads the model's own parameters (fused copies are made when the decoder is built, once per
``HFEngine.generate`` call, so a rollout copy whose weights are overwritten between calls is always
current) and its own rotary module, so every RoPE scaling variant of the checkpoint is honoured. Anything it does not cover (biases, other
activations, sliding windows, PEFT wrappers, non-CPU devices) keeps the generic transformers path:
:func:`supports` decides, and the unit tests check both paths give the same tokens and log-probs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def supports(model: Any) -> bool:
    """True for a plain (not PEFT-wrapped) Llama causal LM on CPU with no projection biases."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama" or type(model).__name__ != "LlamaForCausalLM":
        return False
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False) or cfg.hidden_act != "silu":
        return False
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return False
    try:
        device = next(model.parameters()).device
    except StopIteration:
        return False
    inner = getattr(model, "model", None)
    return device.type == "cpu" and inner is not None and hasattr(inner, "rotary_emb")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, -1)
    return torch.cat((-x2, x1), -1)


class PackedLinear:
    """``F.linear`` with the weight packed once for the CPU's GEMM library (bf16: oneDNN, fp32: MKL).

    Why: at decode batch sizes a CPU matmul is bound by streaming the weight from memory, and a plain
    ``F.linear`` also reorders the weight into the library's layout on every call; packing it once streams each
    byte once. bf16 (oneDNN's blocked layout; measured on a 2-core AMX host: 131 against 201 us for a
    576x1536 projection at batch 8, the same bits out) and fp32 (MKL's packed sgemm; the 30 layers' projections
    of SmolLM2 at batch 8 in 25 against 39 ms on a 2-core AVX-512 host without bf16, equal to ``F.linear`` up to
    fp32 rounding). It is what inductor's weight freezing does on CPU. MKL's packed product serves one batch
    size, so an fp32 call with another number of rows (a prefill, a short last batch) takes the plain path
    inside the operator. Any other dtype, or a torch without the operators, keeps ``F.linear``.
    """

    def __init__(self, weight: torch.Tensor, batch_hint: int):
        self.weight = weight
        self.batch_hint = batch_hint
        self.packed = None
        self.kind = ""
        try:
            if weight.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available():
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint)
                self.kind = "mkldnn"
            elif weight.dtype == torch.float32 and torch.backends.mkl.is_available() and weight.device.type == "cpu":
                self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, batch_hint)
                self.kind = "mkl"
        except (RuntimeError, AttributeError):  # an op missing or refusing this shape: plain path
            self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            try:
                if self.kind == "mkl":
                    return torch.ops.mkl._mkl_linear(x, self.packed, self.weight, None, self.batch_hint)
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
            except RuntimeError:  # a private operator: if a torch build rejects the call, stay on F.linear
                self.packed = None
        return F.linear(x, self.weight)


class LlamaDecoder:
    """Prefill a left-padded batch, then decode one token per row per call, with a preallocated KV cache."""

    def __init__(self, model: Any, batch_hint: int = 8):
        if not supports(model):
            raise ValueError("LlamaDecoder needs a plain LlamaForCausalLM on CPU without projection biases")
        self.model = model
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.batch_hint = batch_hint
        self.layers = self._fuse()
        head = model.lm_head
        self.head = PackedLinear(head.weight, batch_hint) if getattr(head, "bias", None) is None else None

    def start(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Prefill. input_ids, attention_mask: [B, P] (left padded) -> next-token logits [B, V] float32."""
        inner = self.model.model
        dtype = inner.embed_tokens.weight.dtype
        bsz, width = input_ids.shape
        total = width + max_new_tokens
        self.cache = [(torch.zeros(bsz, self.n_kv, total, self.head_dim, dtype=dtype),
                       torch.zeros(bsz, self.n_kv, total, self.head_dim, dtype=dtype)) for _ in self.layers]
        self.key_ok = torch.zeros(bsz, total, dtype=torch.bool)  # [B, T_max] real (not padding) keys
        self.key_ok[:, :width] = attention_mask.bool()
        self.length = 0
        self.position = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, P]
        causal = torch.ones(width, width, dtype=torch.bool).tril()  # [P, P]
        # A padding query attends to itself only, so its row stays finite; real queries never see padding.
        eye = torch.eye(width, dtype=torch.bool)
        mask = causal[None] & (self.key_ok[:, None, :width] | eye[None])  # [B, P, P]
        logits = self._forward(input_ids, self.position, mask[:, None])
        self.position = self.position[:, -1:] + 1  # [B, 1]
        return logits

    def select_rows(self, index: torch.Tensor) -> None:
        """Continue with these rows of the prefilled batch (index: [B'], repeats allowed)."""
        self.cache = [(k[index], v[index]) for k, v in self.cache]
        self.key_ok, self.position = self.key_ok[index], self.position[index]

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Decode. next_ids: [B] -> next-token logits [B, V] float32."""
        self.key_ok[:, self.length] = True
        mask = self.key_ok[:, None, None, : self.length + 1]  # [B, 1, 1, T]
        logits = self._forward(next_ids[:, None], self.position, mask)
        self.position = self.position + 1
        return logits

    def _fuse(self) -> list[dict[str, Any]]:
        layers = []
        b = self.batch_hint
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])  # [(H+2K)*D, E]
            layers.append({
                "ln_attn": layer.input_layernorm.weight,
                "qkv": PackedLinear(qkv, b),
                "o": PackedLinear(attn.o_proj.weight, b),
                "ln_mlp": layer.post_attention_layernorm.weight,
                "gate_up": PackedLinear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), b),  # [2F, E]
                "down": PackedLinear(mlp.down_proj.weight, b),
            })
        return layers

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        xf = x.float()  # as LlamaRMSNorm: normalise in float32, scale in the model's dtype
        return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    @torch.no_grad()
    def _forward(self, ids: torch.Tensor, position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, position: [B, T]; mask: [B, 1, T, length + T] bool. Writes the cache; returns [B, V] float32."""
        inner = self.model.model
        bsz, t = ids.shape
        h, k, d = self.n_heads, self.n_kv, self.head_dim
        x = F.embedding(ids, inner.embed_tokens.weight)  # [B, T, E]
        cos, sin = inner.rotary_emb(x, position)  # [B, T, D]
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, D]
        lo, hi = self.length, self.length + t
        for layer, (k_cache, v_cache) in zip(self.layers, self.cache, strict=True):
            qkv = layer["qkv"](self._rms(x, layer["ln_attn"]))  # [B, T, (H+2K)*D]
            qk, val = qkv.view(bsz, t, h + 2 * k, d).transpose(1, 2).split([h + k, k], 1)  # [B, *, T, D]
            qk = qk * cos + _rotate_half(qk) * sin  # queries and keys rotated together: [B, H + K, T, D]
            q, key = qk.split([h, k], 1)
            k_cache[:, :, lo:hi] = key
            v_cache[:, :, lo:hi] = val
            if t == 1:
                # Decode: the H // K query heads that share a KV head go in as H // K queries of that head, the
                # same math without enable_gqa, which CPU SDPA runs ~3-4x slower (1.3x per bf16 decode step at
                # batch 8, 1.6x at 32; fp32 unchanged). Head i uses KV head i // (H // K), as in repeat_kv.
                att = F.scaled_dot_product_attention(q.reshape(bsz, k, h // k, d), k_cache[:, :, :hi],
                                                     v_cache[:, :, :hi], attn_mask=mask).view(bsz, h, 1, d)
            else:
                att = F.scaled_dot_product_attention(q, k_cache[:, :, :hi], v_cache[:, :, :hi], attn_mask=mask,
                                                     enable_gqa=k != h)  # [B, H, T, D]
            x = x + layer["o"](att.transpose(1, 2).reshape(bsz, t, h * d))
            gate, up = layer["gate_up"](self._rms(x, layer["ln_mlp"])).chunk(2, -1)  # [B, T, F] each
            x = x + layer["down"](F.silu(gate) * up)
        self.length = hi
        last = self._rms(x[:, -1], inner.norm.weight)  # [B, E]
        if self.head is not None:
            return self.head(last).float()  # [B, V]
        head = self.model.lm_head
        return F.linear(last, head.weight, head.bias).float()
