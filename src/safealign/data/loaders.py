"""Read preference, safety and prompt data from CSV / JSON / JSONL / parquet (optionally gzipped) or HF datasets.

Every row is validated on the way in, because a silently mangled pair (an empty response, a flipped
label) poisons a safety fine-tune without any visible error. Problems raise :class:`DataError` naming the
file, the line (or row) and the field; ``skip_bad_rows=True`` drops such rows instead and records how
many in the ``report`` of the returned :class:`RecordList` (and logs a warning).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import SEVERITY_LEVELS, Message, PreferencePair, PromptRecord, SafetyPair, user_prompt

log = logging.getLogger("safealign.data")

TEXT_FIELDS = ("prompt", "goal", "instruction", "text", "question")
LABEL_FIELDS = ("label", "safety_label")
CATEGORY_FIELDS = ("category",)
SCHEMAS = ("auto", "hh", "trl", "pku", "pku-safe-unsafe")
_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet")
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


class DataError(ValueError):
    """A data file or row is invalid; the message names the file, the line/row and the field."""


@dataclass
class LoadReport:
    """What a load did: rows read, records kept, rows skipped (with the first few reasons)."""

    source: str
    n_rows: int = 0
    n_loaded: int = 0
    n_skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def merge(self, other: LoadReport) -> LoadReport:
        return LoadReport(f"{self.source} + {other.source}", self.n_rows + other.n_rows,
                          self.n_loaded + other.n_loaded, self.n_skipped + other.n_skipped,
                          (self.reasons + other.reasons)[:5])


class RecordList(list):
    """A plain list of records that also carries the :class:`LoadReport` of how it was loaded."""

    def __init__(self, items: Iterable[Any] = (), report: LoadReport | None = None) -> None:
        super().__init__(items)
        self.report = report or LoadReport("<records>", len(self), len(self))


@dataclass
class Rows:
    """Raw rows of one source, each with its 1-based line (text files) or row (parquet, HF) number."""

    name: str
    unit: str  # "line" or "row"
    rows: list[tuple[int, Any]]


class _BadLine:
    def __init__(self, msg: str) -> None:
        self.msg = msg


# ----------------------------------------------------------------------------------------------- readers
def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: corrupt gzip file: {err}") from None
    return raw


def _decode(path: Path) -> str:
    try:
        return _open_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _read_jsonl(path: Path, text: str) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as err:
                rows.append((n, _BadLine(f"invalid JSON: {err.msg} (column {err.colno})")))
    return rows


def _read_json(path: Path, text: str) -> list[tuple[int, Any]]:
    """A JSON list of objects; each object is reported by the line it starts on."""
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] == "{":  # JSON lines saved as .json, or a single object
        return _read_jsonl(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} line {err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    # Re-scan to find where each item starts (json.loads keeps no positions).
    dec, rows, pos, line = json.JSONDecoder(), [], start + 1, 1 + text.count("\n", 0, start)
    ws = re.compile(r"[\s,]*")
    for item in data:
        nxt = ws.match(text, pos).end()
        line += text.count("\n", pos, nxt)
        _, end = dec.raw_decode(text, nxt)
        rows.append((line, item))
        line += text.count("\n", nxt, end)
        pos = end
    return rows


def _read_csv(path: Path, text: str, delimiter: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows, last = [], 1
    for row in reader:
        if None in row:
            rows.append((last + 1, _BadLine(f"more cells than the {len(reader.fieldnames or [])} columns")))
        else:
            rows.append((last + 1, row))
        last = reader.line_num
    return rows


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(io.BytesIO(_open_bytes(path)))
    except Exception as err:  # pyarrow raises its own error types
        raise DataError(f"{path}: cannot read parquet: {err}") from None
    return list(enumerate(table.to_pylist(), 1))


def _read_hf(path: str, split: str) -> Rows:
    """A directory saved with ``save_to_disk``, a local dataset folder, or a Hugging Face Hub id."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path}: not a file, and loading a Hugging Face dataset needs `datasets`") from None
    p = Path(path)
    try:
        if p.is_dir() and any((p / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(p))
        else:
            ds = datasets.load_dataset(str(path))
    except Exception as err:  # network, missing repo, bad config: all surface as one DataError
        raise DataError(f"{path}: not a file, and datasets could not load it: {type(err).__name__}: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds and len(ds) != 1:
            raise DataError(f"{path}: no split '{split}'; available: {', '.join(ds)}")
        ds = ds[split] if split in ds else next(iter(ds.values()))
    return Rows(str(path), "row", list(enumerate(ds, 1)))


def read_rows(path: str | Path, hf_split: str = "train") -> Rows:
    """Read raw rows from a file (by suffix, ``.gz`` transparently) or, if not a file, a HF dataset."""
    p = Path(path)
    if not p.is_file():
        hub_id = "/" in str(path) and not str(path).startswith(("/", ".", "~"))
        if any(s in p.name for s in _SUFFIXES) or not (p.is_dir() or hub_id):
            raise DataError(f"{path}: file not found (a Hugging Face Hub id has the form owner/name)")
        return _read_hf(str(path), hf_split)
    suffix = p.suffixes[-2] if p.suffix == ".gz" and len(p.suffixes) > 1 else p.suffix
    suffix = suffix.lower()
    if suffix == ".parquet":
        return Rows(str(path), "row", _read_parquet(p))
    if suffix not in _SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{suffix}' (expected one of {', '.join(_SUFFIXES)})")
    text = _decode(p)
    if suffix in (".csv", ".tsv"):
        return Rows(str(path), "line", _read_csv(p, text, "\t" if suffix == ".tsv" else ","))
    if suffix == ".json":
        return Rows(str(path), "line", _read_json(p, text))
    return Rows(str(path), "line", _read_jsonl(p, text))


def _as_rows(path_or_rows: str | Path | Sequence[dict], hf_split: str = "train") -> Rows:
    if isinstance(path_or_rows, (str, Path)):
        return read_rows(path_or_rows, hf_split)
    return Rows("<rows>", "row", list(enumerate(path_or_rows, 1)))


# ------------------------------------------------------------------------------------------- validation
def _get(row: dict, key: str, where: str) -> Any:
    if key not in row:
        raise DataError(f"{where}: field '{key}' is missing (fields: {', '.join(map(str, row))})")
    return row[key]


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field '{name}' is empty")
    return value


def _messages(value: Any, where: str, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field '{name}' must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise DataError(f"{where}: field '{name}[{i}]' must be a {{role, content}} object")
        role = _get(m, "role", f"{where} ({name}[{i}])")
        if role not in ("system", "user", "assistant"):
            raise DataError(f"{where}: field '{name}[{i}].role' must be system/user/assistant, got {role!r}")
        content = _get(m, "content", f"{where} ({name}[{i}])")
        if not isinstance(content, str):
            raise DataError(f"{where}: field '{name}[{i}].content' must be a string")
        out.append({"role": role, "content": content})
    return out


def _label_id(value: Any, where: str, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value)
    if isinstance(value, bool) or value not in (0, 1):
        raise DataError(f"{where}: field '{name}' must be 0 or 1, got {value!r}")
    return int(value)


def _label_bool(value: Any, where: str, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # CSV cells
        return value.strip().lower() == "true"
    raise DataError(f"{where}: field '{name}' must be true/false, got {value!r}")


def _severity(value: Any, where: str, name: str) -> int | None:
    """PKU-SafeRLHF severity: 0 (none) .. 3, or the names minor/moderate/severe (= 1..3)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in SEVERITY_LEVELS:
            return SEVERITY_LEVELS.index(v) + 1
        value = int(v) if v.isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= len(SEVERITY_LEVELS):
        raise DataError(f"{where}: field '{name}' must be 0-3 or one of {SEVERITY_LEVELS}, got {value!r}")
    return value


# -------------------------------------------------------------------------------------------- HH-RLHF
def parse_hh_dialogue(text: str) -> list[Message]:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` -> messages; consecutive same-role turns are merged.

    Merging keeps roles alternating (chat templates require it); a few HH dialogues have two
    Assistant turns in a row. A ``Human:`` inside a turn (no blank line before it) stays text.
    """
    if text.startswith(("Human:", "Assistant:")):
        text = "\n\n" + text
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ValueError("not an HH dialogue: expected it to start with '\\n\\nHuman:'")
    msgs: list[Message] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _ROLES[speaker], content.strip()
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] = f"{msgs[-1]['content']}\n\n{content}".strip()
        else:
            msgs.append({"role": role, "content": content})
    return msgs


def _split_dialogues(chosen: list[Message], rejected: list[Message], where: str) -> tuple[list[Message], str, str]:
    """Shared prompt (turns before the last assistant turn) and the two final responses."""
    for name, msgs in (("chosen", chosen), ("rejected", rejected)):
        if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
            raise DataError(f"{where}: field '{name}' does not end with an assistant turn after a prompt")
    if chosen[:-1] != rejected[:-1]:
        i = next(i for i, (a, b) in enumerate(zip(chosen, rejected, strict=False)) if a != b)
        raise DataError(f"{where}: field 'rejected' differs from 'chosen' at turn {i + 1}, before the last "
                        "assistant turn, so they do not answer the same prompt")
    c, r = chosen[-1]["content"], rejected[-1]["content"]
    for name, resp in (("chosen", c), ("rejected", r)):
        if not resp.strip():
            raise DataError(f"{where}: field '{name}' is empty (its last assistant turn has no text)")
    return chosen[:-1], c, r


def _hh(row: dict, where: str, source: str | None) -> PreferencePair:
    dialogues = []
    for name in ("chosen", "rejected"):
        value = _get(row, name, where)
        if isinstance(value, list):
            dialogues.append(_messages(value, where, name))
            continue
        try:
            dialogues.append(parse_hh_dialogue(_text(value, where, name)))
        except ValueError as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"{where}: field '{name}': {err}") from None
    prompt, c, r = _split_dialogues(*dialogues, where)
    return PreferencePair(prompt, c, r, source=source)


def _prompt_messages(value: Any, where: str, name: str = "prompt") -> list[Message]:
    if isinstance(value, list):
        msgs = _messages(value, where, name)
    elif isinstance(value, str) and value.lstrip().startswith("Human:"):  # HH-style prompt string
        msgs = parse_hh_dialogue(value.lstrip())
        if msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
            msgs = msgs[:-1]
    else:
        msgs = user_prompt(_text(value, where, name))
    if not any(m["content"].strip() for m in msgs if m["role"] == "user"):
        raise DataError(f"{where}: field '{name}' is empty")
    return msgs


def _response(value: Any, where: str, name: str) -> str:
    if isinstance(value, list):  # TRL conversational: [{"role": "assistant", "content": ...}]
        msgs = _messages(value, where, name)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                raise DataError(f"{where}: field '{name}[{i}].role' must be 'assistant' when 'prompt' is given")
        value = "\n\n".join(m["content"] for m in msgs)
    return _text(value, where, name)


def _trl(row: dict, where: str, source: str | None) -> PreferencePair:
    if "prompt" not in row:  # TRL implicit prompt: chosen/rejected are full conversations
        return _hh(row, where, source)
    prompt = _prompt_messages(row["prompt"], where)
    chosen = _response(_get(row, "chosen", where), where, "chosen")
    return PreferencePair(prompt, chosen, _response(_get(row, "rejected", where), where, "rejected"), source=source)


def _pku_safe_unsafe(row: dict, where: str, source: str | None) -> PreferencePair:
    prompt = _text(_get(row, "prompt", where), where, "prompt")
    resp = _get(row, "response", where)
    if not isinstance(resp, list) or len(resp) != 2:
        raise DataError(f"{where}: field 'response' must be a list [safe, unsafe] of 2 strings")
    safe, unsafe = (_text(x, where, f"response[{i}]") for i, x in enumerate(resp))
    return PreferencePair(user_prompt(prompt), safe, unsafe, True, False, source or "pku-safe-unsafe")


def _pku(row: dict, where: str) -> SafetyPair:
    g = lambda k: _get(row, k, where)  # noqa: E731
    sev = [None, None]
    for i in (0, 1):
        for key in (f"response_{i}_severity_level", f"severity_level_{i}"):
            if key in row:
                sev[i] = _severity(row[key], where, key)
    safe = [_label_bool(g(f"is_response_{i}_safe"), where, f"is_response_{i}_safe") for i in (0, 1)]
    if "severity_level" in row and sev == [None, None]:  # one level for the pair: it rates the unsafe response(s)
        level = _severity(row["severity_level"], where, "severity_level")
        sev = [0 if s else level for s in safe]
    return SafetyPair(
        _text(g("prompt"), where, "prompt"), _text(g("response_0"), where, "response_0"),
        _text(g("response_1"), where, "response_1"),
        _label_id(g("better_response_id"), where, "better_response_id"),
        _label_id(g("safer_response_id"), where, "safer_response_id"), safe[0], safe[1], sev[0], sev[1])


def detect_schema(row: Any) -> str:
    """Which preference schema a row uses, from its keys (``hh``, ``trl``, ``pku``, ``pku-safe-unsafe``)."""
    keys = set(row) if isinstance(row, dict) else set()
    if {"response_0", "response_1"} <= keys:
        return "pku"
    if {"prompt", "response"} <= keys:
        return "pku-safe-unsafe"
    if {"chosen", "rejected"} <= keys:
        return "trl" if "prompt" in keys or isinstance(row["chosen"], list) else "hh"
    return ""


# ---------------------------------------------------------------------------------------------- driver
def _convert(src: Rows, fn: Callable[[dict, str], Any], skip_bad_rows: bool) -> RecordList:
    out, report = [], LoadReport(src.name, len(src.rows))
    for n, row in src.rows:
        where = f"{src.name} {src.unit} {n}"
        try:
            if isinstance(row, _BadLine):
                raise DataError(f"{where}: {row.msg}")
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected an object with named fields, got {type(row).__name__}")
            out.append(fn(row, where))
        except DataError as err:
            if not skip_bad_rows:
                raise
            report.n_skipped += 1
            if len(report.reasons) < 5:
                report.reasons.append(str(err))
    report.n_loaded = len(out)
    if not out:
        why = f"; all {report.n_rows} rows are bad, e.g. {report.reasons[0]}" if report.n_skipped else ""
        raise DataError(f"{src.name}: no records{why}")
    if report.n_skipped:
        log.warning("%s: skipped %d bad row(s) of %d, e.g. %s", src.name, report.n_skipped, report.n_rows,
                    report.reasons[0])
    return RecordList(out, report)


def _schema_of(src: Rows, schema: str) -> str:
    if schema not in SCHEMAS:
        raise DataError(f"unknown schema '{schema}'; expected one of {', '.join(SCHEMAS)}")
    if schema != "auto":
        return schema
    first = next(((n, r) for n, r in src.rows if isinstance(r, dict)), None)
    found = detect_schema(first[1]) if first else ""
    if not found:
        fields = ", ".join(map(str, first[1])) if first else "none"
        where = f"{src.name} {src.unit} {first[0]}" if first else src.name
        raise DataError(f"{where}: cannot tell the preference schema from fields ({fields}); expected HH "
                        "(chosen, rejected), TRL (prompt, chosen, rejected), PKU-SafeRLHF (prompt, response_0, "
                        "response_1, ...) or (prompt, response=[safe, unsafe]); or pass schema=")
    return found


def load_preference_pairs(path_or_rows: str | Path | Sequence[dict], schema: str = "auto", *,
                          skip_bad_rows: bool = False, source: str | None = None,
                          pku_preference: str = "safety", hf_split: str = "train") -> RecordList:
    """Load :class:`PreferencePair` records from HH-RLHF, TRL or PKU-SafeRLHF files (or a list of rows).

    Full PKU-SafeRLHF rows become the ``safer`` (or, with ``pku_preference="helpful"``, the ``better``)
    pair; rows without that label are bad rows.
    """
    src = _as_rows(path_or_rows, hf_split)
    kind = _schema_of(src, schema)
    if kind == "pku":
        if pku_preference not in ("safety", "helpful"):
            raise DataError(f"pku_preference must be 'safety' or 'helpful', got {pku_preference!r}")
        label = "safer_response_id" if pku_preference == "safety" else "better_response_id"

        def fn(row: dict, where: str) -> PreferencePair:
            sp = _pku(row, where)
            pair = sp.safety_pair() if pku_preference == "safety" else sp.helpful_pair()
            if pair is None:
                raise DataError(f"{where}: field '{label}' is null, so the row gives no {pku_preference} preference")
            pair.source = source or pair.source
            return pair
    else:
        conv = {"hh": _hh, "trl": _trl, "pku-safe-unsafe": _pku_safe_unsafe}[kind]
        fn = lambda row, where: conv(row, where, source)  # noqa: E731
    return _convert(src, fn, skip_bad_rows)


def load_safety_pairs(path_or_rows: str | Path | Sequence[dict], *, skip_bad_rows: bool = False,
                      hf_split: str = "train") -> RecordList:
    """Load the full PKU-SafeRLHF schema (helpfulness + safety labels on one response pair) as SafetyPair."""
    return _convert(_as_rows(path_or_rows, hf_split), _pku, skip_bad_rows)


def _pick(keys: Iterable[str], given: str | None, candidates: Sequence[str]) -> str | None:
    keys = list(keys)
    return given if given is not None else next((c for c in candidates if c in keys), None)


def load_prompts(path: str | Path | Sequence[dict], text_field: str | None = None, label_field: str | None = None,
                 category_field: str | None = None, *, default_label: str | None = None,
                 response_field: str | None = None, skip_bad_rows: bool = False, hf_split: str = "train") -> RecordList:
    """Load :class:`PromptRecord` s; fields are auto-detected (``prompt``/``goal``/``instruction``/...).

    An ``instruction`` with a non-empty Alpaca-style ``input`` becomes ``instruction + "\\n\\n" + input``.
    ``response_field`` (e.g. a reference refusal) is validated and kept as ``meta["response"]``; other
    fields go to ``meta``. A path that is not a file is loaded with ``datasets`` (saved dir or hub id).
    """
    src = _as_rows(path, hf_split)
    first = next((r for _, r in src.rows if isinstance(r, dict)), {})
    tf = _pick(first, text_field, TEXT_FIELDS)
    if tf is None:
        raise DataError(f"{src.name}: no prompt text field among ({', '.join(map(str, first))}); "
                        f"expected one of {', '.join(TEXT_FIELDS)} or pass text_field=")
    lf, cf = _pick(first, label_field, LABEL_FIELDS), _pick(first, category_field, CATEGORY_FIELDS)
    inp = "input" if tf == "instruction" else None
    used = {tf, lf, cf, inp, response_field, "id"}

    def scalar(row: dict, key: str | None, where: str) -> str | None:
        if key is None or row.get(key) in (None, ""):
            return None
        if isinstance(row[key], (dict, list)):
            raise DataError(f"{where}: field '{key}' must be a string, got {type(row[key]).__name__}")
        return str(row[key])

    def fn(row: dict, where: str) -> PromptRecord:
        value = _get(row, tf, where)
        if isinstance(value, list):
            msgs = _prompt_messages(value, where, tf)
        else:
            text = _text(value, where, tf)
            extra = row.get(inp) if inp else None
            if extra is not None and not isinstance(extra, str):
                raise DataError(f"{where}: field '{inp}' must be a string, got {type(extra).__name__}")
            msgs = user_prompt(f"{text}\n\n{extra}" if extra and extra.strip() else text)
        if label_field is not None:
            _get(row, label_field, where)
        meta = {k: v for k, v in row.items() if k not in used}
        if response_field is not None:
            meta["response"] = _text(_get(row, response_field, where), where, response_field)
        return PromptRecord(msgs, scalar(row, lf, where) or default_label, scalar(row, cf, where),
                            scalar(row, "id", where), meta)

    return _convert(src, fn, skip_bad_rows)
