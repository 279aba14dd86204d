"""Train reward and cost models: config, the frozen-feature loop (CPU default) and the fine-tuning loop.

Frozen trunk (default): every distinct (prompt, response) text is encoded once, features are cached on
disk under ``$SAFEALIGN_HOME/cache/scorer-features``, and only the K ensemble heads train, so a CPU run
takes minutes and a rerun with other head settings seconds. ``finetune: full | lora`` trains the trunk
too (GPU territory); both loops share the objective in :mod:`safealign.scoring.objective`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from safealign import hardware, paths
from safealign.config import ConfigBase, merge_dotted, option, require, section
from safealign.scoring.backbones import Backbone, BackboneConfig
from safealign.scoring.calibration import fit_scale
from safealign.scoring.data import (
    Example,
    ScorerDataConfig,
    add_prefixes,
    labelled_responses,
    load_source_examples,
)
from safealign.scoring.model import ScoreModel, ScorerMeta
from safealign.scoring.objective import LossWeights, RowTensors, TextTable, index_rows, row_loss, row_metrics
from safealign.scoring.scorer import ModelScorer

log = logging.getLogger("safealign.scoring")


@dataclasses.dataclass
class HeadsConfig(ConfigBase):
    """The ensemble heads on the trunk."""

    num_heads: int = option(5, help="ensemble size K: heads on the shared trunk, each on its own bootstrap "
                                    "resample of the rows; score std is taken across them")
    hidden: int = option(256, help="hidden width of each head's MLP (0 = linear heads)")
    dropout: float = option(0.2, help="dropout on the features and the hidden layer while training")
    heteroscedastic: bool = option(False, help="heads also predict a per-input variance (aleatoric uncertainty, "
                                               "probit-approximated in the losses); reported std includes it")
    feature_fraction: float = option(1.0, help="random-subspace ensemble: each head sees this random fraction of "
                                               "the features (1 = all)")
    severity: bool = option(False, help="add an ordinal severity head (needs rows with severity levels)")

    def validate(self) -> None:
        require(self.num_heads >= 1, "num_heads must be >= 1")
        require(self.hidden >= 0, "hidden must be >= 0")
        require(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        require(0 < self.feature_fraction <= 1, "feature_fraction must be in (0, 1]")


@dataclasses.dataclass
class OptimConfig(ConfigBase):
    """Optimisation, validation and early stopping."""

    epochs: int = option(40, help="maximum passes over the training rows")
    batch_size: int = option(256, help="rows per step (frozen trunk); fine-tuning uses trunk_batch_size")
    trunk_batch_size: int = option(16, help="rows per step when the trunk trains (full / lora)")
    lr: float = option(1e-3, help="learning rate of the heads")
    trunk_lr: float = option(3e-5, help="learning rate of the trunk (full / lora)")
    weight_decay: float = option(0.05, help="AdamW weight decay")
    sign_weight: float = option(1.0, help="weight of the cost sign term (1 = Safe RLHF)")
    prefix_weight: float = option(0.5, help="weight of the prefix-consistency term (prefix score -> full score)")
    severity_weight: float = option(1.0, help="weight of the ordinal severity loss")
    magnitude_weight: float = option(1e-3, help="weight of the score**2 penalty that keeps scores bounded")
    bootstrap: bool = option(True, help="Poisson(1) bootstrap weights per head (diversity for the ensemble std)")
    eval_every: int = option(1, help="validate every N epochs (frozen) or every N*100 steps (fine-tuning)")
    patience: int = option(3, help="stop after this many validations without a lower validation loss (every "
                                   "recorded default run peaked by epoch 5 and never improved after 3 worse ones)")
    seed: int = option(0, help="seed of head init, bootstrap, prefix cuts and batch order")
    feature_batch_size: int = option(64, help="texts per trunk forward pass when computing features")
    threads: int = option(0, help="torch CPU threads (0 = leave torch's default)")
    max_minutes: float = option(0.0, help="stop training after this many minutes (0 = no limit)")
    head_dtype: str = option("auto", help="compute dtype of the heads' training passes on cached features: auto "
                                          "(bf16 where the hardware runs it fast), float32 or bfloat16; weights, "
                                          "optimizer and validation stay float32")

    def validate(self) -> None:
        require(self.epochs >= 1 and self.batch_size >= 2 and self.trunk_batch_size >= 1, "epochs >= 1, batch sizes >= 2")
        require(self.lr > 0 and self.trunk_lr > 0, "learning rates must be > 0")
        require(self.weight_decay >= 0 and self.sign_weight >= 0 and self.prefix_weight >= 0
                and self.severity_weight >= 0, "weights must be >= 0")
        require(self.eval_every >= 1 and self.patience >= 1, "eval_every and patience must be >= 1")
        require(self.feature_batch_size >= 1 and self.threads >= 0 and self.max_minutes >= 0,
                "feature_batch_size >= 1, threads >= 0, max_minutes >= 0")
        require(self.head_dtype in ("auto", "float32", "bfloat16"), "head_dtype must be auto, float32 or bfloat16")


# Per-kind defaults that differ from the fields' own (dotted keys). Reward: refusal negatives in the refusal
# dataset's hedged voice too (docs/scorers.md); the field stays False so that older saved configs, which lack
# it, keep meaning what they meant.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {"reward": {"data.hedged_refusals": True}}


@dataclasses.dataclass
class ScorerTrainConfig(ConfigBase):
    """Options of ``safealign train-scorer``: what to train, on which data, and how."""

    kind: str = option("cost", help="reward (helpfulness, Bradley-Terry) or cost (harm, Safe RLHF cost loss)")
    output: str = option("", help="checkpoint directory ('' = $SAFEALIGN_HOME/scorers/<kind>-custom)")
    backbone: BackboneConfig = section(BackboneConfig, help="the pretrained trunk")
    heads: HeadsConfig = section(HeadsConfig, help="ensemble and severity heads")
    data: ScorerDataConfig = section(ScorerDataConfig, help="training data, splits and prefix augmentation")
    train: OptimConfig = section(OptimConfig, help="optimisation and early stopping")
    calibrate: bool = option(True, help="cost: fit a temperature on validation labels so sigmoid(cost) is calibrated")
    cache_features: bool = option(True, help="frozen trunk: cache features on disk (keyed by trunk and text)")
    evaluate_test: bool = option(True, help="after training, score the held-out test split into the metrics JSON; "
                                            "off, the test split's model-generated rows are not generated either "
                                            "(the scorers trained on first use skip it; the model is the same)")

    def validate(self) -> None:
        require(self.kind in ("reward", "cost"), f"kind must be reward or cost, got '{self.kind}'")
        self.data.with_kind_defaults(self.kind)
        if self.heads.severity:
            require(self.kind == "cost", "the severity head belongs to cost models")

    @classmethod
    def default(cls, kind: str) -> ScorerTrainConfig:
        """The shipped default for ``kind`` (``configs/scorer_<kind>.yaml`` mirrors it)."""
        if kind not in ("reward", "cost"):
            raise ValueError(f"kind must be reward or cost, got '{kind}'")
        return cls.from_dict(merge_dotted({"kind": kind}, KIND_DEFAULTS.get(kind, {})), where=f"default {kind} scorer")

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else paths.home() / "scorers" / f"{self.kind}-custom"


# --------------------------------------------------------------------------------------------- features
class FeatureCache:
    """Content-addressed feature store: sha1(trunk key, prompt, response) -> feature row (float16)."""

    def __init__(self, backbone: Backbone, enabled: bool) -> None:
        b = backbone.cfg
        ident = json.dumps([b.name, backbone.layers, b.max_prompt_tokens, b.max_response_tokens, b.pairing,
                            b.dtype, backbone.arch, _weights_id(backbone)])
        self.key = hashlib.sha1(ident.encode()).hexdigest()[:16]
        self.path = paths.home() / "cache" / "scorer-features" / f"{self.key}.pt"
        self.enabled = enabled
        self.store: dict[str, torch.Tensor] = {}
        self.dirty = False
        if enabled and self.path.exists():
            blob = torch.load(self.path, weights_only=True)
            self.store = dict(zip(blob["keys"], blob["feats"], strict=True))

    @staticmethod
    def text_id(key: tuple[str, str]) -> str:
        return hashlib.sha1(f"{key[0]}\x00{key[1]}".encode()).hexdigest()

    def features(self, backbone: Backbone, table: TextTable, batch_size: int, device: str) -> torch.Tensor:
        """Features [len(table), D] of every text in ``table``; computes and stores the missing ones."""
        ids = [self.text_id(k) for k in table.keys()]
        missing = [i for i, t in enumerate(ids) if t not in self.store]
        if missing:
            feats = backbone.featurize([table.prompts[i] for i in missing], [table.responses[i] for i in missing],
                                       batch_size=batch_size, device=device, progress=True)
            for j, i in enumerate(missing):
                self.store[ids[i]] = feats[j].to(torch.float16)
            self.dirty = True
        return torch.stack([self.store[t] for t in ids]).float()


    def flush(self) -> None:
        """Write new features to disk (atomically); called after the training and the evaluation passes."""
        if not (self.enabled and self.dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"keys": list(self.store), "feats": torch.stack(list(self.store.values()))}, tmp)
        tmp.replace(self.path)
        self.dirty = False


def _weights_id(backbone: Backbone) -> str:
    """Cheap identity of the trunk weights (a few sampled values), so a changed model invalidates the cache."""
    h = hashlib.sha1()
    params = list(backbone.model.named_parameters())
    for name, p in params[:: max(1, len(params) // 8)]:
        h.update(name.encode())
        h.update(p.detach().float().flatten()[:64].numpy().tobytes())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------------------ model
def build_model(cfg: ScorerTrainConfig) -> ScoreModel:
    """Trunk (LoRA-wrapped if asked) + K heads (+ severity head), untrained heads."""
    backbone = Backbone.from_pretrained(cfg.backbone.name, cfg.backbone)
    if cfg.backbone.finetune == "lora":
        backbone.apply_lora()
    if cfg.backbone.finetune == "frozen":
        for p in backbone.parameters():
            p.requires_grad_(False)
    from safealign.data.records import SEVERITY_LEVELS

    meta = ScorerMeta(kind=cfg.kind, arch=backbone.arch, base_model=cfg.backbone.name, num_heads=cfg.heads.num_heads,
                      head_hidden=cfg.heads.hidden, feature_dim=backbone.feature_dim,
                      backbone={**{k: v for k, v in cfg.backbone.to_dict().items() if k != "finetune"},
                                "pool_layers": list(backbone.layers)},  # absolute: the saved trunk may be cut
                      prefix_trained=cfg.data.prefixes_per_example > 0, heteroscedastic=cfg.heads.heteroscedastic,
                      severity_levels=["none", *SEVERITY_LEVELS] if cfg.heads.severity else None,
                      train_config=cfg.to_dict())
    return ScoreModel(backbone, meta, severity=cfg.heads.severity, dropout=cfg.heads.dropout,
                      feature_fraction=cfg.heads.feature_fraction, seed=cfg.train.seed)


@dataclasses.dataclass
class TrainResult:
    scorer: ModelScorer
    metrics: dict[str, Any]
    output: Path


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _head_params(model: ScoreModel) -> list[torch.nn.Parameter]:
    params = list(model.heads.parameters())
    if model.severity is not None:
        params += list(model.severity.parameters())
    return params


def _scores_for(model: ScoreModel, feats: torch.Tensor, rows: RowTensors) -> dict[str, torch.Tensor]:
    """Head scores [R, K] of a, b, full_a, full_b for rows indexing into ``feats`` [U, D] (-1: absent, 0 there).

    Only present texts go through the heads: single responses have no b and only prefix rows have full
    texts, whose scores are detached targets, so they are computed without a graph.
    """
    out: dict[str, torch.Tensor] = {}
    k = model.meta.num_heads
    for name, idx in (("a", rows.a), ("b", rows.b), ("full_a", rows.full_a), ("full_b", rows.full_b)):
        target = name.startswith("full")
        keep = idx >= 0  # [R]
        if target and not bool((rows.full_a >= 0).any()):
            continue
        with torch.set_grad_enabled(torch.is_grad_enabled() and not target):
            mean, var = model.heads.full(feats[idx[keep]])  # [R', K] each (var: None unless heteroscedastic)
        # float32 whatever the heads ran in (bf16 autocast): the losses stay in full precision
        mean, var = mean.float(), None if var is None else var.float()
        out[name] = torch.zeros(len(idx), k, dtype=mean.dtype).index_put((keep,), mean)
        if var is not None and not target:
            out[f"{name}_var"] = torch.ones(len(idx), k, dtype=var.dtype).index_put((keep,), var)
    return out


def _loss(model: ScoreModel, kind: str, feats: torch.Tensor, rows: RowTensors, w: LossWeights) -> torch.Tensor:
    scores = _scores_for(model, feats, rows)
    sev = thresholds = None
    if model.severity is not None:
        both = torch.cat([rows.a, rows.b.clamp(min=0)])  # [2R]
        sev, thresholds = model.severity(feats[both]).float(), model.severity.thresholds().float()
    return row_loss(kind, scores, rows, w, sev, thresholds)


@torch.no_grad()
def _validate(model: ScoreModel, kind: str, feats: torch.Tensor, rows: RowTensors, w: LossWeights) -> dict[str, float]:
    was = model.training
    model.eval()
    plain = dataclasses.replace(rows, boot=torch.ones_like(rows.boot))
    loss = float(_loss(model, kind, feats, plain, w))
    a = model.heads(feats[rows.a]).mean(1)
    b = model.heads(feats[rows.b.clamp(min=0)]).mean(1)
    model.train(was)
    return {"val_loss": loss, **{f"val_{k}": v for k, v in row_metrics(kind, a, b, rows).items()}}


class _EarlyStop:
    """Keeps the state with the lowest validation loss; says stop after ``patience`` evaluations without one."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.bad, self.state, self.best_at = patience, math.inf, 0, None, -1

    def update(self, loss: float, state: dict[str, torch.Tensor], at: int) -> bool:
        if loss < self.best - 1e-4:
            self.best, self.bad, self.best_at = loss, 0, at
            self.state = {k: v.detach().clone() for k, v in state.items()}
        else:
            self.bad += 1
        return self.bad >= self.patience


def _trainable_state(model: ScoreModel) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names or k.startswith("heads.")}


# ---------------------------------------------------------------------------------------------- loops
def _localise(rows: RowTensors, table_size: int) -> tuple[RowTensors, list[int]]:
    """Re-index rows to the texts they use: (rows indexing into a local list, that list of table indices)."""
    fields = ("a", "b", "full_a", "full_b")
    need = torch.unique(torch.cat([getattr(rows, f) for f in fields]))
    need = need[need >= 0]
    where = torch.full((table_size,), -1, dtype=torch.long)
    where[need] = torch.arange(len(need))
    local = {f: torch.where(getattr(rows, f) >= 0, where[getattr(rows, f).clamp(min=0)], -1) for f in fields}
    return dataclasses.replace(rows, **local), need.tolist()


def _fit_frozen(model: ScoreModel, cfg: ScorerTrainConfig, feats: torch.Tensor, tr: RowTensors, va: RowTensors,
                train_idx: torch.Tensor, history: list[dict], progress: bool) -> _EarlyStop:
    """Train only the heads on cached features [U, D]."""
    model.heads.set_feature_stats(feats[train_idx])
    if model.severity is not None:
        model.severity.score.set_feature_stats(feats[train_idx])
    o = cfg.train
    w = LossWeights(o.sign_weight, o.prefix_weight, o.severity_weight, o.magnitude_weight)
    opt = torch.optim.AdamW(_head_params(model), lr=o.lr, weight_decay=o.weight_decay)
    stop, start = _EarlyStop(o.patience), time.perf_counter()
    gen = torch.Generator().manual_seed(o.seed)
    # The heads' matrix products (5 x [3072, 256] per text) are most of this loop's cost; bf16 autocast runs
    # them faster on CPUs with native bf16, while weights and Adam states stay float32.
    dtype = hardware.resolve_dtype(o.head_dtype, str(feats.device))
    device_type = feats.device.type
    model.train()
    bar = tqdm(range(o.epochs), desc=f"train {cfg.kind} heads", disable=not progress)
    for epoch in bar:
        perm = torch.randperm(len(tr), generator=gen)
        total = 0.0
        for s in range(0, len(perm), o.batch_size):
            with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
                loss = _loss(model, cfg.kind, feats, tr.select(perm[s: s + o.batch_size]), w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * min(o.batch_size, len(perm) - s)
        if (epoch + 1) % o.eval_every == 0 or epoch == o.epochs - 1:
            val = _validate(model, cfg.kind, feats, va, w)
            history.append({"epoch": epoch + 1, "train_loss": total / len(perm), **val})
            bar.set_postfix({k: f"{v:.3f}" for k, v in val.items() if not k.startswith("val_n")})
            if stop.update(val["val_loss"], _trainable_state(model), epoch + 1):
                break
        if o.max_minutes and time.perf_counter() - start > 60 * o.max_minutes:
            break
    return stop


def _fit_trunk(model: ScoreModel, cfg: ScorerTrainConfig, table: TextTable, tr: RowTensors, va: RowTensors,
               device: str, history: list[dict], progress: bool) -> _EarlyStop:
    """Train trunk (full or LoRA) and heads end to end; features are recomputed every step."""
    o = cfg.train
    w = LossWeights(o.sign_weight, o.prefix_weight, o.severity_weight, o.magnitude_weight)
    model.to(device)
    sample = torch.unique(tr.a)[:512].tolist()
    model.heads.set_feature_stats(model.backbone.featurize(
        [table.prompts[i] for i in sample], [table.responses[i] for i in sample],
        batch_size=o.feature_batch_size, device=device).to(device))
    if model.severity is not None:
        model.severity.score.feat_mean.copy_(model.heads.feat_mean)
        model.severity.score.feat_std.copy_(model.heads.feat_std)
    trunk = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": trunk, "lr": o.trunk_lr}, {"params": _head_params(model), "lr": o.lr}],
                            weight_decay=o.weight_decay)
    va_local, val_need = _localise(va, len(table))
    stop, start, step = _EarlyStop(o.patience), time.perf_counter(), 0
    gen = torch.Generator().manual_seed(o.seed)
    model.train()
    done = False
    for epoch in range(o.epochs):
        perm = torch.randperm(len(tr), generator=gen)
        bar = tqdm(range(0, len(perm), o.trunk_batch_size), desc=f"train {cfg.kind} epoch {epoch + 1}",
                   disable=not progress)
        for s in bar:
            rows, need = _localise(tr.select(perm[s: s + o.trunk_batch_size]), len(table))
            feats = model.backbone([table.prompts[i] for i in need], [table.responses[i] for i in need])
            loss = _loss(model, cfg.kind, feats, rows, w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            bar.set_postfix(loss=f"{float(loss):.3f}")
            if step % (100 * o.eval_every) == 0 or s + o.trunk_batch_size >= len(perm):
                vf = model.backbone.featurize([table.prompts[i] for i in val_need], [table.responses[i] for i in val_need],
                                              batch_size=o.feature_batch_size, device=device)
                val = _validate(model, cfg.kind, vf.to(device), va_local, w)
                history.append({"epoch": epoch + 1, "step": step, **val})
                if stop.update(val["val_loss"], _trainable_state(model), step):
                    done = True
                    break
            if o.max_minutes and time.perf_counter() - start > 60 * o.max_minutes:
                done = True
                break
        if done:
            break
    return stop


# ----------------------------------------------------------------------------------------------- driver
def _rows_by_split(sources: dict[str, dict[str, list[Example]]], split: str) -> list[Example]:
    return [e for s in sources.values() for e in s[split]]


def _feature_score_fn(model: ScoreModel, cache: FeatureCache, batch_size: int, device: str):
    """Score function over the feature cache (fast evaluation of a frozen-trunk model)."""
    from safealign.scoring.base import Scores

    def score(prompts: Sequence[list[dict]], responses: Sequence[str]) -> Scores:
        table = TextTable()
        idx = [table.add(p, r) for p, r in zip(prompts, responses, strict=True)]
        feats = cache.features(model.backbone, table, batch_size, device)[idx]
        return Scores(*model.publish(feats.to(device)))

    return score


def train_scorer(cfg: ScorerTrainConfig, *, progress: bool = True, device: str | None = None) -> TrainResult:
    """Train, calibrate, save and evaluate one scorer; writes ``metrics.json`` next to the checkpoint."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    device = device or hardware.default_device()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    _seed_everything(cfg.train.seed)
    out_dir = cfg.output_dir()
    timings: dict[str, float] = {}

    sources = load_source_examples(cfg.data, cfg.kind, generate_test=cfg.evaluate_test)
    train_rows = add_prefixes(_rows_by_split(sources, "train"), cfg.data.prefixes_per_example,
                              cfg.data.prefix_min_fraction, cfg.train.seed)
    val_rows = _rows_by_split(sources, "validation")
    counts = {name: {k: len(v) for k, v in s.items()} for name, s in sources.items()}
    timings["data_s"] = time.perf_counter() - t_start

    model = build_model(cfg)
    table = TextTable()
    k = cfg.heads.num_heads
    tr = index_rows(train_rows, table, k, cfg.train.bootstrap, cfg.train.seed)
    va = index_rows(val_rows, table, k, False, cfg.train.seed)
    history: list[dict] = []
    frozen = cfg.backbone.finetune == "frozen"
    cache = FeatureCache(model.backbone, cfg.cache_features) if frozen else None
    t0 = time.perf_counter()
    if frozen:
        model.backbone.to(device)
        feats = cache.features(model.backbone, table, cfg.train.feature_batch_size, device)
        cache.flush()
        timings["features_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_idx = torch.unique(torch.cat([tr.a, tr.b[tr.b >= 0]]))
        stop = _fit_frozen(model, cfg, feats, tr, va, train_idx, history, progress)
    else:
        stop = _fit_trunk(model, cfg, table, tr, va, device, history, progress)
    timings["fit_s"] = time.perf_counter() - t0
    if stop.state is not None:
        model.load_state_dict(stop.state, strict=False)
    model.to(device).eval()

    # Normalisation: rewards standardised on training responses; costs keep 0 and get a temperature.
    t0 = time.perf_counter()
    score_fn = (_feature_score_fn(model, cache, cfg.train.feature_batch_size, device) if frozen
                else ModelScorer(model, device=device, batch_size=cfg.train.feature_batch_size).score)
    full_train = [e for e in train_rows if e.fraction >= 1]
    if cfg.kind == "reward":
        sample = full_train[:4000]
        s = score_fn([e.messages for e in sample], [e.a for e in sample]).mean
        sb = [e for e in sample if e.b is not None]
        s = np.concatenate([s, score_fn([e.messages for e in sb], [e.b for e in sb]).mean])
        model.meta.norm_mean, model.meta.norm_std = float(s.mean()), float(max(s.std(), 1e-6))
    elif cfg.calibrate:
        prompts, responses, label = labelled_responses(val_rows)
        if label.size:
            if frozen:
                table = TextTable()
                idx = [table.add(p, r) for p, r in zip(prompts, responses, strict=True)]
                feats = cache.features(model.backbone, table, cfg.train.feature_batch_size, device)[idx]
            else:
                feats = model.backbone.featurize(prompts, responses, batch_size=cfg.train.feature_batch_size,
                                                 device=device)
            feats = feats.to(device)
            model.meta.norm_std = fit_scale(lambda t: model.publish(feats, temperature=t)[0], label)
        model.meta.norm_mean = 0.0
    timings["calibrate_s"] = time.perf_counter() - t0
    timings["train_total_s"] = time.perf_counter() - t_start
    # CPU seconds of this process: on a shared machine wall time mostly measures the neighbours
    timings["train_cpu_s"] = time.process_time() - cpu_start

    metrics: dict[str, Any] = {
        "kind": cfg.kind, "output": str(out_dir), "device": device, "threads": torch.get_num_threads(),
        "hardware": hardware.describe(), "load_average_1m": os.getloadavg()[0], "rows": counts, "train_rows_with_prefixes": len(train_rows),
        "distinct_texts": len(table), "history": history, "best_at": stop.best_at, "best_val_loss": stop.best,
        "stopped_early": len(history) > 0 and history[-1].get("epoch", 0) < cfg.train.epochs,
        "temperature": model.meta.norm_std if cfg.kind == "cost" else None,
        "norm": {"mean": model.meta.norm_mean, "std": model.meta.norm_std},
    }
    from safealign.scoring.evaluate import evaluate_sources

    t0 = time.perf_counter()
    validation = evaluate_sources(cfg.kind, {"all": val_rows}, score_fn, ())["sources"]["all"]  # features cached
    if cfg.evaluate_test:
        test = {name: s["test"] for name, s in sources.items()}
        metrics["test"] = evaluate_sources(cfg.kind, test, score_fn, cfg.data.eval_prefix_fractions)
        metrics["test"]["validation"] = validation
    else:
        metrics["test"] = {"skipped": "evaluate_test is off; `safealign train-scorer` computes the test metrics",
                           "validation": validation}
    timings["evaluate_s"] = time.perf_counter() - t0
    if cache is not None:
        cache.flush()
    metrics["timings"] = timings
    model.meta.metrics = {k: v for k, v in metrics.items() if k not in ("history",)}
    model.save(out_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    cfg.save(out_dir / "train_config.yaml")
    return TrainResult(ModelScorer(model, device=device, batch_size=cfg.train.feature_batch_size), metrics, out_dir)
