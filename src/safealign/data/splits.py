"""Deterministic train/validation/test splits keyed on a hash of the normalised prompt text.

Hashing (not shuffling) means a prompt lands in the same split in every run and in every dataset that
contains it, and duplicates of a prompt can never straddle two splits, so nothing trained on leaks
into evaluation.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

SPLITS = ("train", "validation", "test")
_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Strip, lower-case and collapse whitespace, so trivial variants of a prompt share a split."""
    return _WS.sub(" ", text.strip().lower())


def _check(fractions: Sequence[float]) -> None:
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers (train, validation, test) summing to 1, "
                         f"got {tuple(fractions)}")


def assign_split(text: str, fractions: Sequence[float] = (0.8, 0.1, 0.1), salt: str = "safealign") -> str:
    """The split of one prompt: sha256(salt, normalised text) mapped to [0, 1) against the fractions."""
    _check(fractions)
    digest = hashlib.sha256(f"{salt}\x00{normalise(text)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, frac in zip(SPLITS, fractions, strict=True):
        edge += frac
        if u < edge:
            return name
    return next(n for n, f in zip(reversed(SPLITS), reversed(fractions), strict=True) if f > 0)


def record_key(record: Any) -> str:
    """The prompt text of a record: PromptRecord.text, PreferencePair.prompt, SafetyPair.prompt, tuple[0]..."""
    if isinstance(record, str):
        return record
    if isinstance(record, tuple):
        return record_key(record[0])
    if isinstance(record, dict):
        return str(record.get("prompt", record.get("text", "")))
    for attr in ("text", "prompt"):
        value = getattr(record, attr, None)
        if isinstance(value, str):
            return value
    raise TypeError(f"cannot find the prompt text of {type(record).__name__}; pass key=")


def split_records(records: Iterable[Any], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  key: Callable[[Any], str] = record_key, salt: str = "safealign") -> dict[str, list]:
    """``{"train": [...], "validation": [...], "test": [...]}``, input order kept within each split."""
    _check(fractions)
    out: dict[str, list] = {name: [] for name in SPLITS}
    for rec in records:
        out[assign_split(key(rec), fractions, salt)].append(rec)
    return out
