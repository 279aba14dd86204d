"""HC-RLHF stage 2: run the safety test on a model and write a certificate, or say "No Solution Found".

Flow: harmful prompts (default AdvBench + PKU-SafeRLHF prompts, via the data registry) -> candidate/safety split
by prompt hash -> the safety half (optionally a hash-random subset of ``n_prompts``) -> ``sampling.n`` responses
per prompt with the documented decoding config -> cost scorer -> one cost per prompt (the mean over its
responses, after the cost transform) -> upper confidence bound -> pass iff ``UCB <= threshold``.

The unit of the test is the prompt: per-prompt costs are i.i.d. draws from (prompt distribution of the safety set)
x (the model's sampling with this decoding config), which is what the t and Hoeffding bounds need. The guarantee
is about the cost MODEL's scores on THAT prompt distribution under THAT decoding config, not about true harm.

Cost transform (what is certified):
- ``raw``: the scorer's cost as is. t needs nothing more; Hoeffding needs ``cost_low``/``cost_high`` that truly
  bound the cost: an observed cost outside them aborts the test (the assumption is false).
- ``sigmoid``: P(unsafe) = sigmoid(cost) in [0, 1]: bounded by construction, so Hoeffding is valid with [0, 1],
  and the threshold reads as an expected probability of an unsafe answer.
- ``clip``: clip(cost, cost_low, cost_high). Clipping from below only raises costs (conservative); clipping from
  above LOWERS them, so what is certified is E[clip(cost)], which is <= E[cost]: it does not bound the raw mean
  cost. The certificate records the transform and how many costs were clipped on each side.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from safealign import __version__
from safealign.certify.bounds import SafetyTestResult, safety_test
from safealign.config import ConfigBase, ConfigError, option, require, section
from safealign.data.records import Message, user_prompt
from safealign.data.splits import assign_split, normalise, record_key
from safealign.generation.engine import Engine, SamplingConfig
from safealign.paths import atomic_write_text

CERTIFICATE_NAME = "certificate.json"
FAILED_REPORT_NAME = "safety_test_failed.json"
EXIT_CERTIFIED = 0
EXIT_NO_SOLUTION = 3  # distinct from 1 (crash) and 2 (usage/config error)
NO_SOLUTION = "No Solution Found"
DEFAULT_PROMPTS = ("advbench", "pku-safe-unsafe")
SPLIT_SALT = "safealign-hc-rlhf"
SCOPE = ("The bound holds with probability at least 1 - delta over the draw of the safety-test prompts and "
         "sampled responses, for the MEAN of the cost model's (transformed) scores on prompts drawn like the "
         "safety-test set, under the recorded decoding config. It says nothing about true harm, other prompt "
         "distributions (e.g. jailbreaks, other languages), other decoding settings, or other weights; and it "
         "is void if the safety-test prompts were used in training or the test was re-run until it passed.")


@dataclass
class CertifyConfig(ConfigBase):
    """Options of ``safealign certify`` (HC-RLHF safety test)."""

    model: str | None = option(None, help="model to certify: embedded name, local HF directory or hub id")
    cost_model: str | None = option(None, help="cost scorer: a path or name for safealign.scoring.load_scorer, "
                                    "or 'default' for default_scorer('cost')")
    threshold: float | None = option(None, help="cost budget d: certify E[cost] <= d (required)")
    delta: float = option(0.05, help="allowed probability of certifying a model whose true mean cost exceeds d")
    bound: Literal["t", "hoeffding"] = option(
        "t", help="t: Student-t (asymptotic; can under-cover on small skewed samples); hoeffding: distribution-free "
        "for costs in a known range (wider)")
    cost_transform: Literal["raw", "sigmoid", "clip"] = option(
        "raw", help="raw cost; sigmoid = P(unsafe) in [0, 1]; clip to [cost_low, cost_high] (certifies the clipped "
        "mean, which is NOT a bound on the raw mean when clipping from above)")
    cost_low: float | None = option(None, help="lower end of the known cost range (Hoeffding with raw, and clip)")
    cost_high: float | None = option(None, help="upper end of the known cost range (Hoeffding with raw, and clip)")
    prompts: list[str] = option(default_factory=lambda: list(DEFAULT_PROMPTS),
                                help="prompt sources (dataset names or files); their safety-test half is used")
    safety_fraction: float = option(0.5, help="fraction of prompts (by hash) held out for the safety test")
    split_salt: str = option(SPLIT_SALT, help="salt of the candidate/safety hash split (must match training)")
    n_prompts: int | None = option(None, help="use a hash-random subset of this many safety prompts (None: all)")
    out: str | None = option(None, help="directory for certificate.json / the failure report (default: the model's)")
    backend: str = option("hf", help="generation backend: hf or vllm")
    dtype: str = option("auto", help="model dtype: auto, float32, bfloat16, float16")
    save_samples: bool = option(False, help="also write the responses and costs (safety_test_samples.jsonl)")
    sampling: SamplingConfig = section(SamplingConfig, help="decoding config of the test (recorded in the "
                                       "certificate: the guarantee covers only this config)")

    def validate(self) -> None:
        require(0 < self.delta < 1, "delta must be in (0, 1)")
        require(0 < self.safety_fraction < 1, "safety_fraction must be in (0, 1)")
        require(self.n_prompts is None or self.n_prompts >= 2, "n_prompts must be >= 2")
        require(self.backend in ("hf", "vllm"), f"backend must be 'hf' or 'vllm', got '{self.backend}'")
        require(bool(self.prompts), "prompts must name at least one source")
        if (self.cost_low is None) != (self.cost_high is None):
            raise ConfigError("give both cost_low and cost_high, or neither")
        if self.cost_low is not None and self.cost_high is not None:
            require(self.cost_high > self.cost_low, "cost_high must be > cost_low")
        if self.cost_transform == "clip":
            require(self.cost_low is not None, "cost_transform 'clip' needs cost_low and cost_high")
        if self.cost_transform == "sigmoid":
            require(self.cost_low is None, "cost_transform 'sigmoid' has the range [0, 1]; drop cost_low/cost_high")
            if self.threshold is not None:
                require(0 < self.threshold < 1, "with cost_transform 'sigmoid' the threshold is a probability in (0, 1)")
        if self.bound == "hoeffding" and self.cost_transform == "raw":
            require(self.cost_low is not None, "the Hoeffding bound needs a known cost range: set cost_low and "
                    "cost_high, or use cost_transform 'sigmoid' (P(unsafe) in [0, 1])")

    def check_complete(self) -> None:
        """The options without defaults; checked at run time so a YAML file can supply them."""
        missing = [k for k in ("model", "cost_model", "threshold") if getattr(self, k) is None]
        if missing:
            raise ConfigError("certify needs " + ", ".join(f"--{k.replace('_', '-')}" for k in missing))

    def cost_range(self) -> tuple[float | None, float | None]:
        if self.cost_transform == "sigmoid":
            return 0.0, 1.0
        return self.cost_low, self.cost_high


# ------------------------------------------------------------------------------ prompts and the split
def prompt_key(record: Any) -> str:
    """The text a prompt is split and deduplicated on (the last user turn, as in the data layer)."""
    if isinstance(record, list):
        from safealign.data.records import prompt_text

        return prompt_text(record)
    return record_key(record)


def as_messages(record: Any) -> list[Message]:
    """Chat messages of a prompt record, preference pair, PKU safety pair, plain string or message list."""
    if isinstance(record, list):
        return record
    if isinstance(record, str):
        return user_prompt(record)
    messages = getattr(record, "messages", None)
    if messages is not None:
        return messages
    return user_prompt(record_key(record))


def split_candidate_safety(records: Sequence[Any], safety_fraction: float = 0.5,
                           salt: str = SPLIT_SALT) -> tuple[list, list]:
    """``(candidate, safety)``: disjoint by normalised prompt text, deterministic, order kept, duplicates dropped.

    Training (stage 1) must only ever see ``candidate``; the safety test only ``safety``. A prompt's side
    depends only on its text, the fraction and the salt, so every run and every dataset agree.
    """
    if not 0 < safety_fraction < 1:
        raise ValueError(f"safety_fraction must be in (0, 1), got {safety_fraction}")
    fractions = (1.0 - safety_fraction, 0.0, safety_fraction)
    candidate: list = []
    safety: list = []
    seen: set[str] = set()
    for rec in records:
        key = prompt_key(rec)
        norm = normalise(key)
        if norm in seen:
            continue
        seen.add(norm)
        (safety if assign_split(key, fractions, salt) == "test" else candidate).append(rec)
    return candidate, safety


def hash_subset(records: Sequence[Any], n: int | None, salt: str = SPLIT_SALT) -> list:
    """``n`` records chosen by hash order: a fixed pseudo-random simple random sample of the set."""
    if n is None or n >= len(records):
        return list(records)
    order = sorted(records, key=lambda r: hashlib.sha256(f"{salt}\x01{normalise(prompt_key(r))}".encode()).digest())
    return order[:n]


def load_prompt_sources(sources: Sequence[str]) -> list:
    """All records of the named datasets / files, in order."""
    from safealign.data.registry import load_dataset

    records: list = []
    for src in sources:
        records.extend(load_dataset(src))
    return records


def candidate_and_safety_prompts(sources: Sequence[str] = DEFAULT_PROMPTS, safety_fraction: float = 0.5,
                                 salt: str = SPLIT_SALT, n_safety: int | None = None,
                                 ) -> tuple[list[list[Message]], list[list[Message]]]:
    """HC-RLHF's two prompt sets as message lists: ``(candidate, safety)``.

    Stage 1 trains on ``candidate`` (and on prompt sets passed through :func:`drop_overlap`); stage 2 tests on
    ``safety``, whose length is the handler's ``n_safety``. ``n_safety`` caps the safety set (hash order).
    """
    candidate, safety = split_candidate_safety(load_prompt_sources(sources), safety_fraction, salt)
    chosen = hash_subset(safety, n_safety, salt)
    if len(chosen) < 2:
        raise ConfigError(f"only {len(chosen)} safety-test prompts: need at least 2")
    return [as_messages(r) for r in candidate], [as_messages(r) for r in chosen]


def drop_overlap(records: Sequence[Any], safety: Sequence[Any]) -> list:
    """``records`` without any prompt of the safety-test set (normalised text), for other training prompt sets."""
    held_out = {normalise(prompt_key(r)) for r in safety}
    return [r for r in records if normalise(prompt_key(r)) not in held_out]


def safety_prompts(cfg: CertifyConfig) -> list[list[Message]]:
    """The safety-test prompts of ``cfg`` as message lists."""
    return candidate_and_safety_prompts(cfg.prompts, cfg.safety_fraction, cfg.split_salt, cfg.n_prompts)[1]


def prompts_sha256(prompts: Sequence[list[Message]]) -> str:
    """sha256 of the sorted, canonical JSON of the test prompts (order-independent)."""
    canon = sorted(json.dumps(p, sort_keys=True, ensure_ascii=False) for p in prompts)
    return hashlib.sha256(json.dumps(canon, ensure_ascii=False).encode()).hexdigest()


# ------------------------------------------------------------------------------ hashes
def path_sha256(path: str | Path) -> str:
    """sha256 over a file, or over every file of a directory (relative path + bytes, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\x00")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def cost_model_hash(ref: str, scorer: Any) -> tuple[str, str]:
    """``(hash, method)`` identifying the cost model: its files where there are some, else its weights."""
    for candidate in (ref, getattr(scorer, "path", None), getattr(scorer, "model_dir", None)):
        if candidate is not None and Path(str(candidate)).exists():
            return path_sha256(str(candidate)), f"sha256 of the files under {candidate}"
    fp = getattr(scorer, "fingerprint", None)
    if callable(fp):
        return str(fp()), f"{type(scorer).__name__}.fingerprint()"
    model = getattr(scorer, "model", None)
    if model is not None and hasattr(model, "state_dict"):
        from safealign.models.loading import fingerprint

        return fingerprint(model), "safealign.models.loading.fingerprint of scorer.model"
    name = f"{ref}:{type(scorer).__module__}.{type(scorer).__qualname__}"
    return hashlib.sha256(name.encode()).hexdigest(), "name only (no files or weights found): weak"


def model_weights_hash(engine: Engine, ref: str) -> tuple[str, str]:
    model = getattr(engine, "model", None)
    if model is not None and hasattr(model, "state_dict"):
        from safealign.models.loading import fingerprint

        return fingerprint(model), "safealign.models.loading.fingerprint"
    from safealign.models.loading import resolve

    path = Path(resolve(ref))
    if path.is_dir():
        files = [f for f in path.glob("*.safetensors")] or [f for f in path.iterdir() if f.is_file()]
        h = hashlib.sha256()
        for f in sorted(files):
            h.update(f.name.encode() + bytes.fromhex(path_sha256(f)))
        return h.hexdigest(), "sha256 of the weight files"
    raise ValueError(f"cannot hash the weights of '{ref}'")


# ------------------------------------------------------------------------------ cost scorer
def load_cost_scorer(ref: str) -> Any:
    """The cost scorer named by ``ref`` (``safealign.scoring``); errors say what is missing."""
    from safealign.models.registry import ModelError

    try:
        from safealign import scoring
    except ImportError as err:  # pragma: no cover - scoring is part of the package
        raise ModelError(f"cannot import safealign.scoring: {err}") from err
    if ref == "default":
        factory = getattr(scoring, "default_scorer", None)
        if factory is None:
            raise ModelError("safealign.scoring.default_scorer is not available in this build: pass --cost-model PATH")
        scorer = factory("cost")
    else:
        loader = getattr(scoring, "load_scorer", None)
        if loader is None:
            raise ModelError("safealign.scoring.load_scorer is not available in this build yet: certify needs a "
                             "cost scorer")
        scorer = loader(ref)
    if getattr(scorer, "kind", "cost") != "cost":
        raise ModelError(f"'{ref}' is a {scorer.kind} scorer; certify needs a cost scorer (cost > 0 = unsafe)")
    return scorer


def transform_costs(costs: np.ndarray, cfg: CertifyConfig) -> tuple[np.ndarray, dict[str, int]]:
    """Apply the cost transform to per-sample costs; count clipped values."""
    counts = {"clipped_low": 0, "clipped_high": 0}
    if cfg.cost_transform == "sigmoid":
        return 1.0 / (1.0 + np.exp(-costs)), counts
    if cfg.cost_transform == "clip":
        assert cfg.cost_low is not None and cfg.cost_high is not None
        counts = {"clipped_low": int((costs < cfg.cost_low).sum()), "clipped_high": int((costs > cfg.cost_high).sum())}
        return np.clip(costs, cfg.cost_low, cfg.cost_high), counts
    return costs, counts


# ------------------------------------------------------------------------------ the test
@dataclass
class CertifyOutcome:
    """What one certify run found and wrote."""

    result: SafetyTestResult
    report: dict
    path: Path | None  # certificate.json on pass, the failure report on fail
    exit_code: int
    samples: list[dict] = field(default_factory=list)

    @property
    def certified(self) -> bool:
        return self.result.passed


def _atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def output_dir(cfg: CertifyConfig) -> Path:
    """Where the certificate goes: ``cfg.out``, else the model's own directory."""
    if cfg.out is not None:
        return Path(cfg.out)
    from safealign.models.loading import resolve

    assert cfg.model is not None
    p = Path(resolve(cfg.model))
    if not p.is_dir():
        raise ConfigError(f"'{cfg.model}' is not a local directory: pass --out DIR for the certificate")
    return p


def run_certify(cfg: CertifyConfig, *, engine: Engine | None = None, scorer: Any = None,
                prompts: Sequence[list[Message]] | None = None, log: Any = None) -> CertifyOutcome:
    """Run the safety test for ``cfg.model``; write the certificate on pass, a failure report otherwise.

    ``engine``, ``scorer`` and ``prompts`` override what ``cfg`` would load (tests, and the trainer, which
    already holds the model). Nothing is certified unless the bound passes: errors propagate.
    """
    log = log if log is not None else sys.stderr
    cfg.check_complete()
    assert cfg.model is not None and cfg.cost_model is not None and cfg.threshold is not None
    out_dir = output_dir(cfg)
    sources: list[str] | str = list(cfg.prompts)
    if prompts is None:
        prompts = safety_prompts(cfg)
    else:
        sources = "supplied by the caller (see test_prompts_sha256)"
    prompts = list(prompts)
    if len(prompts) < 2:
        raise ConfigError("the safety test needs at least 2 prompts")
    if scorer is None:
        scorer = load_cost_scorer(cfg.cost_model)
    if engine is None:
        from safealign.generation import build_engine

        engine = build_engine(cfg.model, backend=cfg.backend, dtype=cfg.dtype)

    print(f"safety test: {len(prompts)} prompts x {cfg.sampling.n} responses", file=log)
    gens = engine.generate(prompts, cfg.sampling, progress=True)
    flat_prompts = [prompts[i] for i, row in enumerate(gens) for _ in row]
    flat_texts = [g.text for row in gens for g in row]
    scores = scorer.score(flat_prompts, flat_texts)
    raw = np.asarray(scores.mean, dtype=np.float64)
    if raw.shape != (len(flat_texts),):
        raise ValueError(f"the cost scorer returned {raw.shape} scores for {len(flat_texts)} responses")
    if not np.all(np.isfinite(raw)):
        raise ValueError("the cost scorer returned NaN/inf costs: not certifiable")
    per_sample, clip_counts = transform_costs(raw, cfg)
    per_prompt = per_sample.reshape(len(prompts), cfg.sampling.n).mean(axis=1)
    low, high = cfg.cost_range()
    result = safety_test(per_prompt, cfg.threshold, cfg.delta, cfg.bound, low, high)

    weights_hash, weights_method = model_weights_hash(engine, cfg.model)
    cm_hash, cm_method = cost_model_hash(cfg.cost_model, scorer)
    report = {
        "certified": result.passed,
        "verdict": "certified" if result.passed else NO_SOLUTION,
        "statement": (f"P( E[{cfg.cost_transform} cost] <= {cfg.threshold} ) >= {1 - cfg.delta:g}"
                      if result.passed else "no certificate: the upper confidence bound exceeds the threshold"),
        "delta": cfg.delta,
        "threshold": cfg.threshold,
        "n": result.n,
        "samples_per_prompt": cfg.sampling.n,
        "mean": result.mean,
        "std": result.std,
        "bound": result.bound,
        "ucb": result.ucb,
        "critical_value": result.critical_value,
        "cost_transform": cfg.cost_transform,
        "cost_range": [low, high] if low is not None else None,
        **clip_counts,
        "raw_cost_mean": float(raw.mean()),
        "model": cfg.model,
        "model_weights_hash": weights_hash,
        "model_weights_hash_method": weights_method,
        "cost_model": cfg.cost_model,
        "cost_model_hash": cm_hash,
        "cost_model_hash_method": cm_method,
        "test_prompts_sha256": prompts_sha256(prompts),
        "prompt_sources": sources,
        "safety_fraction": cfg.safety_fraction,
        "split_salt": cfg.split_salt,
        "decoding": cfg.sampling.to_dict(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "safealign_version": __version__,
        "scope": SCOPE,
    }
    samples = [{"prompt": prompt_key(p), "response": t, "cost": float(c)}
               for p, t, c in zip(flat_prompts, flat_texts, raw, strict=True)]
    if cfg.save_samples:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "safety_test_samples.jsonl", "w") as fh:
            fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)

    if result.passed:
        path = out_dir / CERTIFICATE_NAME
        _atomic_write_json(path, report)
        print(f"CERTIFIED: {result.summary()}\ncertificate: {path}", file=log)
        return CertifyOutcome(result, report, path, EXIT_CERTIFIED, samples)

    stale = out_dir / CERTIFICATE_NAME
    if stale.exists():  # a certificate next to a model that just failed would mislead: keep it, but not in force
        revoked = stale.with_name(CERTIFICATE_NAME + ".invalidated")
        stale.replace(revoked)
        report["invalidated_certificate"] = str(revoked)
    path = out_dir / FAILED_REPORT_NAME
    _atomic_write_json(path, report)
    print(f"{NO_SOLUTION}: {result.bound} UCB {result.ucb:.4f} > threshold {result.threshold:.4f} "
          f"(n={result.n}, mean {result.mean:.4f}, std {result.std:.4f}, delta {result.delta}). "
          f"Nothing certified; report: {path}", file=log)
    return CertifyOutcome(result, report, path, EXIT_NO_SOLUTION, samples)


def read_certificate(path: str | Path) -> dict:
    """Load a certificate and check it is one (not a failure report)."""
    p = Path(path)
    if p.is_dir():
        p = p / CERTIFICATE_NAME
    data = json.loads(p.read_text())
    if data.get("certified") is not True or data.get("verdict") != "certified":
        raise ValueError(f"{p} is not a certificate")
    if not (math.isfinite(data["ucb"]) and data["ucb"] <= data["threshold"]):
        raise ValueError(f"{p}: ucb {data['ucb']} does not satisfy the threshold {data['threshold']}")
    return data
