"""A persistent cache of generations and judgements (SQLite), so reports re-run instantly and evals resume.

Generations are keyed by (model hash, prompt messages, decoding config, sample index); judgements by
(judge id, prompt, response). Every finished batch is committed at once, so an interrupted evaluation
loses at most the batch in flight. SQLite's WAL mode lets concurrent runs share one cache file safely.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from safealign import paths

# Decoding options that do not change the distribution of a sample and so stay out of the key.
_IRRELEVANT = ("batch_size", "n")


def default_cache_path() -> Path:
    return paths.home() / "eval_cache" / "cache.sqlite"


def decoding_key(decoding: dict[str, Any]) -> str:
    """Stable hash of a decoding config (a SamplingConfig dict or a decoder description)."""
    clean = {k: v for k, v in sorted(decoding.items()) if k not in _IRRELEVANT}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prompt_key(messages: Any) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class EvalCache:
    """``get``/``put`` generations and judgements; ``EvalCache(None)`` is an in-memory cache (tests, no disk)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False,
                                   timeout=60)
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS generations (model TEXT, decoding TEXT, prompt TEXT, "
                         "sample INTEGER, value TEXT, PRIMARY KEY (model, decoding, prompt, sample))")
        self._db.execute("CREATE TABLE IF NOT EXISTS judgements (judge TEXT, key TEXT, value TEXT, "
                         "PRIMARY KEY (judge, key))")
        self._db.commit()

    # ------------------------------------------------------------------------------------------ generations
    def get_generations(self, model: str, decoding: str, prompt: str, samples: int) -> list[dict | None]:
        """Cached records for samples ``0..samples-1`` of one prompt (None where missing)."""
        with self._lock:
            rows = self._db.execute("SELECT sample, value FROM generations WHERE model=? AND decoding=? AND "
                                    "prompt=? AND sample<?", (model, decoding, prompt, samples)).fetchall()
        out: list[dict | None] = [None] * samples
        for s, v in rows:
            out[s] = json.loads(v)
        return out

    def put_generations(self, model: str, decoding: str, items: Iterable[tuple[str, int, dict]]) -> None:
        """Store ``(prompt_key, sample, record)`` triples in one transaction."""
        rows = [(model, decoding, p, s, json.dumps(rec, ensure_ascii=False)) for p, s, rec in items]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)", rows)
            self._db.commit()

    # ------------------------------------------------------------------------------------------ judgements
    @staticmethod
    def judgement_key(prompt: Any, response: str) -> str:
        return hashlib.sha256(json.dumps([prompt, response], ensure_ascii=False).encode()).hexdigest()

    def get_judgements(self, judge: str, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i:i + 500])
                marks = ",".join("?" * len(chunk))
                for k, v in self._db.execute(f"SELECT key, value FROM judgements WHERE judge=? AND key IN ({marks})",
                                             (judge, *chunk)):
                    out[k] = json.loads(v)
        return out

    def put_judgements(self, judge: str, values: dict[str, Any]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?)",
                                 [(judge, k, json.dumps(v)) for k, v in values.items()])
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EvalCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
