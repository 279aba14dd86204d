"""Trunks for reward and cost models: any HF encoder or causal LM, turned into one feature vector per pair.

Encoders (MiniLM, BERT, RoBERTa) are pooled: per selected layer the CLS state and the mean over tokens.
With ``pairing: separate`` (default) prompt and response are encoded on their own, as the sentence-embedding
model was trained, and a prompt shared by several responses (a pair, its prefixes, N decoding candidates)
is encoded once; ``pairing: cross`` reads ``[CLS] prompt [SEP] response [SEP]`` with attention across both.
Causal LMs (SmolLM2, Llama) read the chat-templated dialogue and contribute the state of the *last
non-pad token* (where Safe RLHF / OpenRLHF reward models put their score head) plus the mean over
response tokens. Middle encoder layers are pooled by default because, with a frozen trunk, they separated
safe from unsafe responses at least as well as the last one, and the blocks above need not run at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from safealign import hardware
from safealign.config import ConfigBase, option, require
from safealign.data.records import Message, user_prompt

Arch = Literal["encoder", "causal"]
FINETUNE_MODES = ("frozen", "full", "lora")


@dataclasses.dataclass
class BackboneConfig(ConfigBase):
    """Which pretrained trunk reads (prompt, response) and how it is trained."""

    name: str = option("all-minilm-l6-v2", help="embedded model name, local HF directory or hub id of the trunk")
    finetune: str = option("frozen", help="frozen (features computed once and cached; only the heads train: "
                                          "the fast CPU default), full (all weights) or lora (adapters, merged on save)")
    pool_layers: list[int] = option(default_factory=list,
                                    help="hidden layers pooled into the features (0 = embeddings; negative counts "
                                         "from the top); blocks above the highest one are dropped. Empty = auto: "
                                         "encoders 2/3 and 1/2 of the depth (MiniLM: 4, 3), causal LMs the last")
    max_prompt_tokens: int = option(64, help="prompt tokens kept (truncated from the left: the latest turns)")
    max_response_tokens: int = option(96, help="response tokens kept (truncated from the right)")
    dtype: str = option("auto", help="compute dtype: auto (bf16 autocast where the CPU/GPU runs it fast), "
                                     "float32, bfloat16")
    lora_r: int = option(8, help="LoRA rank (finetune: lora)")
    lora_alpha: int = option(16, help="LoRA scaling alpha (finetune: lora)")
    lora_dropout: float = option(0.05, help="dropout on the LoRA branch (finetune: lora)")
    pairing: str = option("separate", help="encoders only: cross (one input '[CLS] prompt [SEP] response', "
                                        "attention across both) or separate (prompt and response encoded on their "
                                        "own, sentence-embedding style; prompts shared by several responses are "
                                        "encoded once)")
    trust_remote_code: bool = option(False, help="allow model code from the checkpoint (off: safer)")

    def validate(self) -> None:
        require(self.finetune in FINETUNE_MODES, f"finetune must be one of {FINETUNE_MODES}, got '{self.finetune}'")
        require(self.pairing in ("cross", "separate"), f"pairing must be cross or separate, got '{self.pairing}'")
        require(self.max_prompt_tokens >= 8, "max_prompt_tokens must be >= 8")
        require(self.max_response_tokens >= 4, "max_response_tokens must be >= 4")
        require(self.dtype in ("auto", "float32", "bfloat16"), "dtype must be auto, float32 or bfloat16")
        require(self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be >= 1")
        require(0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)")


def render_dialogue(messages: Sequence[Message]) -> str:
    """Plain-text dialogue for encoders: one ``Role: text`` line per turn (the latest turns matter most)."""
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def as_messages(prompt: str | Sequence[Message]) -> list[Message]:
    return user_prompt(prompt) if isinstance(prompt, str) else list(prompt)


def detect_arch(config: Any) -> Arch:
    """``causal`` for decoder-only LMs (score on the last token), ``encoder`` for bidirectional models."""
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or getattr(config, "is_decoder", False):
        return "causal"
    if getattr(config, "model_type", "") in ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi3",
                                              "gemma", "gemma2", "smollm3", "olmo", "olmo2"):
        return "causal"
    return "encoder"


class Backbone(nn.Module):
    """A HF trunk plus its tokenisation and pooling: ``forward(batch) -> features [B, feature_dim]``."""

    def __init__(self, model: nn.Module, tokenizer: Any, arch: Arch, cfg: BackboneConfig) -> None:
        super().__init__()
        self.model, self.tokenizer, self.arch, self.cfg = model, tokenizer, arch, cfg
        hidden = int(model.config.hidden_size)
        n_layers = int(model.config.num_hidden_layers)
        self.layers = [layer if layer >= 0 else n_layers + 1 + layer for layer in cfg.pool_layers or
                       auto_layers(arch, n_layers)]
        for layer in self.layers:
            require(0 <= layer <= n_layers, f"pool layer {layer} outside 0..{n_layers} of {cfg.name}")
        # per layer: encoders CLS + response mean + prompt mean (cross) or the CLS + mean of each text
        # (separate); causal LMs the last-token state + response mean.
        per_layer = 2 if arch == "causal" else (3 if cfg.pairing == "cross" else 4)
        self.feature_dim = hidden * per_layer * len(self.layers)
        self.use_token_types = arch == "encoder" and getattr(model.config, "type_vocab_size", 1) >= 2
        self._truncate_unused_layers()

    def _truncate_unused_layers(self) -> None:
        """Drop transformer blocks above the highest pooled layer: they cannot change the features, and
        on CPU they are pure cost (pooling MiniLM layers 3-4 instead of 6 saves a third of the compute)."""
        keep = max(self.layers)
        blocks = _layer_list(self.model)
        n = int(self.model.config.num_hidden_layers)
        if blocks is None or keep >= n or keep == 0:
            return
        del blocks[keep:]
        self.model.config.num_hidden_layers = keep
        if hasattr(self.model.config, "layer_types") and isinstance(self.model.config.layer_types, list):
            self.model.config.layer_types = self.model.config.layer_types[:keep]
    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, ref: str, cfg: BackboneConfig, arch: Arch | None = None) -> Backbone:
        """Load trunk and tokenizer (safetensors only, no remote code unless configured)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from safealign.models.loading import resolve

        path = resolve(ref)
        hf_cfg = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        arch = arch or detect_arch(hf_cfg)
        model = AutoModel.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, use_safetensors=True,
                                          dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return cls(model.eval(), tok, arch, cfg)

    def apply_lora(self) -> None:
        """Wrap the trunk with LoRA adapters (peft picks the attention projections per model type)."""
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(r=self.cfg.lora_r, lora_alpha=self.cfg.lora_alpha, lora_dropout=self.cfg.lora_dropout,
                          target_modules=_lora_targets(self.model))
        self.model = get_peft_model(self.model, lcfg)

    def merged_model(self) -> nn.Module:
        """The plain HF trunk (LoRA merged in), for saving as an ordinary checkpoint."""
        return self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model

    # ------------------------------------------------------------------ tokenisation
    def encode_pair(self, prompt: str | Sequence[Message], response: str) -> tuple[list[int], int]:
        """Token ids of one joint (prompt, response) input and the index where the response starts."""
        tok, cfg = self.tokenizer, self.cfg
        msgs = as_messages(prompt)
        resp = tok(response, add_special_tokens=False)["input_ids"][: cfg.max_response_tokens]
        if self.arch == "causal":
            if getattr(tok, "chat_template", None):
                text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            else:
                text = render_dialogue(msgs) + "\nAssistant: "
            head = tok(text, add_special_tokens=False)["input_ids"][-cfg.max_prompt_tokens:]
            return head + resp, len(head)
        body = tok(render_dialogue(msgs), add_special_tokens=False)["input_ids"][-cfg.max_prompt_tokens:]
        head = self._open + body + self._sep
        return head + resp + self._sep, len(head)

    def encode_single(self, text: str, from_left: bool) -> tuple[list[int], int]:
        """Token ids of one text on its own (``pairing: separate``); all of it is "response" for pooling."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        cap = self.cfg.max_prompt_tokens if from_left else self.cfg.max_response_tokens
        ids = ids[-cap:] if from_left else ids[:cap]
        return self._open + ids + self._sep, len(self._open)

    @property
    def _open(self) -> list[int]:
        tok = self.tokenizer
        first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        return [first] if first is not None else []

    @property
    def _sep(self) -> list[int]:
        tok = self.tokenizer
        sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        return [sep] if sep is not None else []

    def collate(self, encoded: Sequence[tuple[list[int], int]], device: str | torch.device) -> dict[str, torch.Tensor]:
        """Right-padded tensors: input_ids, attention_mask (token_type_ids) [B, L]; response/prompt masks [B, L]."""
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attn = torch.zeros(len(encoded), width, dtype=torch.long)
        resp = torch.zeros(len(encoded), width)
        prompt = torch.zeros(len(encoded), width)
        types = torch.zeros(len(encoded), width, dtype=torch.long)
        closing = len(self._sep) if self.arch == "encoder" else 0
        opening = len(self._open) if self.arch == "encoder" else 0
        for i, (row, start) in enumerate(encoded):
            ids[i, : len(row)] = torch.tensor(row)
            attn[i, : len(row)] = 1
            types[i, start: len(row)] = 1
            resp[i, start: max(len(row) - closing, start + 1)] = 1
            prompt[i, opening: max(start - closing, opening + 1)] = 1
        batch = {"input_ids": ids, "attention_mask": attn, "response_mask": resp, "prompt_mask": prompt}
        if self.use_token_types and self.cfg.pairing == "cross":
            batch["token_type_ids"] = types
        return {k: v.to(device) for k, v in batch.items()}

    # ------------------------------------------------------------------ features
    def pool(self, batch: dict[str, torch.Tensor], with_prompt: bool) -> torch.Tensor:
        """Run the trunk on a collated batch and pool the selected layers -> [B, per-text features]."""
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        device = batch["input_ids"].device
        dtype = hardware.resolve_dtype(self.cfg.dtype, str(device))
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = self.model(**inputs, output_hidden_states=True)
        last = (batch["attention_mask"].sum(1) - 1).clamp(min=0)  # [B] index of the last non-pad token
        feats = []
        for layer in self.layers:
            h = out.hidden_states[layer].float()  # [B, L, H]
            resp_mean = _masked_mean(h, batch["response_mask"])  # [B, H]
            if self.arch == "causal":
                feats += [h[torch.arange(h.shape[0], device=device), last], resp_mean]
            else:
                feats += [h[:, 0], resp_mean] + ([_masked_mean(h, batch["prompt_mask"])] if with_prompt else [])
        return torch.cat(feats, dim=-1)

    def forward(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str]) -> torch.Tensor:
        """Features [B, feature_dim] of (prompt, response) pairs, with gradients when the trunk trains."""
        device = next(self.model.parameters()).device
        return self._features(prompts, responses, max(1, len(responses)), device, progress=False)

    @torch.no_grad()
    def featurize(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str], *,
                  batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = False) -> torch.Tensor:
        """Features [N, feature_dim] (float32, CPU) in length-sorted batches: the inference / caching path."""
        was_training = self.training
        self.eval()
        try:
            return self._features(prompts, responses, batch_size, device, progress).cpu()
        finally:
            self.train(was_training)

    def _features(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str], batch_size: int,
                  device: str | torch.device, progress: bool) -> torch.Tensor:
        """Features [N, feature_dim] on ``device``. With ``pairing: separate`` every distinct prompt is encoded
        once per call, not once per batch: a preference pair and its prefix copies share one prompt."""
        if self.cfg.pairing == "cross" or self.arch == "causal":
            return self._pooled([self.encode_pair(p, r) for p, r in zip(prompts, responses, strict=True)],
                                batch_size, device, progress, with_prompt=True)
        keys = [render_dialogue(as_messages(p)) for p in prompts]
        uniq = list(dict.fromkeys(keys))
        where = {k: i for i, k in enumerate(uniq)}
        rf = self._pooled([self.encode_single(r, False) for r in responses], batch_size, device, progress)
        pf = self._pooled([self.encode_single(k, True) for k in uniq], batch_size, device, progress)
        return torch.cat([rf, pf[torch.tensor([where[k] for k in keys], device=pf.device)]], dim=-1)

    def _pooled(self, encoded: Sequence[tuple[list[int], int]], batch_size: int, device: str | torch.device,
                progress: bool, with_prompt: bool = False) -> torch.Tensor:
        """Pooled features [N, D] of encoded inputs, run shortest first so each batch carries little padding."""
        from tqdm.auto import tqdm

        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        out: torch.Tensor | None = None
        for s in tqdm(range(0, len(order), batch_size), desc="features", disable=not progress, leave=False):
            idx = order[s: s + batch_size]
            f = self.pool(self.collate([encoded[i] for i in idx], device), with_prompt=with_prompt).float()
            if out is None:
                out = f.new_zeros(len(encoded), f.shape[-1])
            out[idx] = f
        return out if out is not None else torch.zeros(0, self.feature_dim, device=device)


def auto_layers(arch: Arch, n_layers: int) -> list[int]:
    """Default pooled layers. Encoders: 2/3 and 1/2 of the depth, because a frozen sentence-embedding model's
    middle layers separated safe from unsafe responses better than its last (docs/scorers.md) and the
    blocks above them need not run; causal LMs: the last layer (the usual reward-model head position)."""
    if arch == "causal":
        return [n_layers]
    return sorted({max(1, round(2 * n_layers / 3)), max(1, round(n_layers / 2))}, reverse=True)


def _masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of h [B, L, H] over positions where mask [B, L] is 1 -> [B, H] (zeros where the mask is empty)."""
    m = mask.to(h.dtype)[..., None]
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def _layer_list(model: nn.Module) -> nn.ModuleList | None:
    """The ModuleList of transformer blocks (BERT ``encoder.layer``, Llama ``layers``, GPT-2 ``h``)."""
    for path in ("encoder.layer", "layers", "h", "model.layers", "transformer.h", "gpt_neox.layers"):
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    return None


def _lora_targets(model: nn.Module) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for pair in (("q_proj", "v_proj"), ("query", "value"), ("c_attn",), ("query_key_value",)):
        if set(pair) <= names:
            return list(pair)
    raise ValueError("cannot tell which modules take LoRA adapters in this model; use finetune: full")
