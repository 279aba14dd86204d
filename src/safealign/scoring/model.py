"""Score heads on a trunk: K ensemble heads (mean / std per input), an ordinal severity head, save / load.

A checkpoint directory is an ordinary HF checkpoint of the trunk (``config.json``, ``model.safetensors``,
tokenizer files: loadable with ``AutoModel``) plus ``score_heads.safetensors`` and ``scorer_config.json``,
which says what the number means: reward or cost, the sign convention, and the normalisation
``score = (raw - mean) / std`` applied to every head (for cost models mean = 0, so the threshold 0 keeps
its meaning, and std is the fitted temperature).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from safealign.losses import ordered_thresholds, probit_scale
from safealign.scoring.backbones import Backbone, BackboneConfig

HEADS_FILE = "score_heads.safetensors"
META_FILE = "scorer_config.json"
SIGN_CONVENTIONS = {
    "reward": "higher = more helpful; normalised to mean 0, std 1 on the training responses",
    "cost": "cost > 0 means unsafe (threshold 0); sigmoid(cost) = calibrated P(unsafe)",
}


class EnsembleHead(nn.Module):
    """K independent MLP heads on shared features: x [B, D] -> scores [B, K] (and variances [B, K]).

    Stored as batched weights so K heads cost one einsum, not K module calls. ``hidden = 0`` makes each
    head linear. Features are standardised first with fixed train statistics (``set_feature_stats``).
    ``heteroscedastic`` heads also output a log-variance per input: the spread of a latent score whose
    logistic expectation is the label probability (Kendall & Gal 2017), learnt where labels disagree.
    """

    def __init__(self, dim: int, k: int, hidden: int = 256, dropout: float = 0.1, feature_fraction: float = 1.0,
                 seed: int = 0, heteroscedastic: bool = False) -> None:
        super().__init__()
        self.dim, self.k, self.hidden, self.heteroscedastic = dim, k, hidden, heteroscedastic
        out = 2 if heteroscedastic else 1
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))
        # Random-subspace ensemble: head k sees a fixed random subset of the features ([K, D] 0/1), so
        # heads disagree where the evidence is carried by only some features.
        mask = torch.ones(k, dim)
        if feature_fraction < 1 and k > 1:
            gen = torch.Generator().manual_seed(seed)
            mask = (torch.rand(k, dim, generator=gen) < feature_fraction).float()
        self.register_buffer("mask", mask)
        self.drop = nn.Dropout(dropout)
        width = hidden or out
        self.w1 = nn.Parameter(torch.randn(k, dim, width) / math.sqrt(dim))  # [K, D, H]
        self.b1 = nn.Parameter(torch.zeros(k, width))  # [K, H]
        if hidden:
            self.w2 = nn.Parameter(torch.randn(k, hidden, out) / math.sqrt(hidden))  # [K, H, out]
            self.b2 = nn.Parameter(torch.zeros(k, out))  # [K, out]
        if heteroscedastic:  # start with small variances: log var = -3
            with torch.no_grad():
                (self.b2 if hidden else self.b1)[:, 1].fill_(-3.0)

    def set_feature_stats(self, feats: torch.Tensor) -> None:
        """Standardise inputs with the mean / std of training features [N, D]."""
        self.feat_mean.copy_(feats.mean(0))
        self.feat_std.copy_(feats.std(0).clamp(min=1e-4))

    def full(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Means [B, K] and variances [B, K] (None unless heteroscedastic)."""
        x = self.drop((x.float() - self.feat_mean) / self.feat_std)  # [B, D]
        h = torch.einsum("bd,kdh->bkh", x, self.w1 * self.mask[..., None]) + self.b1  # [B, K, H]
        if self.hidden:
            h = self.drop(nn.functional.gelu(h))
            h = torch.einsum("bkh,kho->bko", h, self.w2) + self.b2  # [B, K, out]
        if not self.heteroscedastic:
            return h[..., 0], None
        return h[..., 0], h[..., 1].clamp(-10.0, 6.0).exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.full(x)[0]  # [B, K]


class SeverityHead(nn.Module):
    """Ordinal severity: one latent score per response plus increasing cut points between the levels."""

    def __init__(self, dim: int, levels: int = 4, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.score = EnsembleHead(dim, 1, hidden, dropout)
        self.raw_thresholds = nn.Parameter(torch.linspace(-1.0, 1.0, levels - 1))  # [levels - 1]

    def thresholds(self) -> torch.Tensor:
        return ordered_thresholds(self.raw_thresholds)  # [levels - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x).squeeze(-1)  # [B]


@dataclasses.dataclass
class ScorerMeta:
    """What a saved scorer computes; written to ``scorer_config.json`` next to the trunk."""

    kind: str  # "reward" | "cost"
    arch: str  # "encoder" | "causal"
    base_model: str
    num_heads: int
    head_hidden: int
    feature_dim: int
    backbone: dict[str, Any]
    norm_mean: float = 0.0
    norm_std: float = 1.0
    sign_convention: str = ""
    prefix_trained: bool = False
    heteroscedastic: bool = False
    severity_levels: list[str] | None = None
    train_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.kind not in SIGN_CONVENTIONS:
            raise ValueError(f"scorer kind must be 'reward' or 'cost', got {self.kind!r}")
        self.sign_convention = self.sign_convention or SIGN_CONVENTIONS[self.kind]


class ScoreModel(nn.Module):
    """Trunk + ensemble heads (+ optional severity head). ``forward(batch) -> raw scores [B, K]``."""

    def __init__(self, backbone: Backbone, meta: ScorerMeta, severity: bool = False, dropout: float = 0.1,
                 feature_fraction: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.backbone, self.meta = backbone, meta
        self.heads = EnsembleHead(backbone.feature_dim, meta.num_heads, meta.head_hidden, dropout, feature_fraction,
                                  seed, meta.heteroscedastic)
        self.severity = SeverityHead(backbone.feature_dim, dropout=dropout) if severity else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.heads(self.backbone(batch))

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw head outputs -> published scale (reward: standardised; cost: divided by the temperature)."""
        return (raw - self.meta.norm_mean) / self.meta.norm_std

    @torch.no_grad()
    def publish(self, feats: torch.Tensor, temperature: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features [N, D] -> (mean [N], std [N], members [N, K]) as the Scorer API reports them.

        std combines the heads' disagreement (epistemic) with their mean predicted variance (aleatoric,
        heteroscedastic heads only): std^2 = Var_k(mu_k) + mean_k(v_k). With heteroscedastic heads all
        three are multiplied by kappa(std^2), so sigmoid(mean) is the probit approximation of the
        predictive probability (P(unsafe) for cost models) and the sign (cost > 0) is unchanged.
        ``temperature`` overrides ``norm_std`` (used while fitting it).
        """
        raw, var = self.heads.full(feats)  # [N, K], [N, K] | None
        scale = self.meta.norm_std if temperature is None else temperature
        mu = ((raw - self.meta.norm_mean) / scale).double()  # [N, K]
        between = mu.var(1, unbiased=True) if mu.shape[1] > 1 else torch.zeros_like(mu[:, 0])  # [N]
        total = between + (var.double() / scale ** 2).mean(1) if var is not None else between  # [N]
        k = probit_scale(total) if var is not None else torch.ones_like(total)  # [N]
        out = (mu.mean(1) * k, total.sqrt() * k, mu * k[:, None])
        return tuple(t.cpu().numpy() for t in out)  # type: ignore[return-value]

    # ------------------------------------------------------------------ persistence
    def save(self, out: str | Path) -> Path:
        """Write an HF checkpoint of the trunk plus heads and ``scorer_config.json``."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.merged_model().save_pretrained(out, safe_serialization=True)
        self.backbone.tokenizer.save_pretrained(out)
        tensors = {f"heads.{k}": v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}
        if self.severity is not None:
            tensors |= {f"severity.{k}": v.detach().cpu().contiguous() for k, v in self.severity.state_dict().items()}
        save_file(tensors, str(out / HEADS_FILE))
        (out / META_FILE).write_text(json.dumps(dataclasses.asdict(self.meta), indent=2, default=str))
        return out

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ScoreModel:
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / META_FILE).exists():
            raise FileNotFoundError(f"{path} is not a safealign scorer (no {META_FILE})")
        raw = json.loads((path / META_FILE).read_text())
        known = {f.name for f in dataclasses.fields(ScorerMeta)}
        meta = ScorerMeta(**{k: v for k, v in raw.items() if k in known})
        bcfg = BackboneConfig.from_dict({**meta.backbone, "finetune": "frozen", "name": str(path)})
        backbone = Backbone.from_pretrained(str(path), bcfg, arch=meta.arch)  # type: ignore[arg-type]
        tensors = load_file(str(path / HEADS_FILE))
        model = cls(backbone, meta, severity=any(k.startswith("severity.") for k in tensors))
        missing, unexpected = model.heads.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("heads.")}, strict=False)
        if unexpected or set(missing) - {"mask"}:  # checkpoints before random subspaces have no mask
            raise ValueError(f"{path}: score heads do not match (missing {missing}, unexpected {unexpected})")
        if model.severity is not None:
            model.severity.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("severity.")})
        return model.to(device).eval()
