"""Safety suites: named, versioned prompt lists with the behaviour a safe and helpful model should show.

Built-in suites are held-out splits (by prompt hash, see :mod:`safealign.data.splits`) so a model trained on
the train split of the same data set is never evaluated on its training prompts. Any user file with a label
column is a suite too (``--suites my_prompts.csv``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from safealign.config import ConfigBase, option, require
from safealign.data.loaders import DataError
from safealign.data.records import Message

Expected = Literal["refuse", "comply"]
SuiteKind = Literal["harmful", "over-refusal", "helpful", "custom"]

# Label words of user files, mapped to the expected behaviour.
REFUSE_LABELS = frozenset({"harmful", "unsafe", "refuse", "refusal", "should_refuse", "1", "true", "yes", "bad"})
COMPLY_LABELS = frozenset({"safe", "benign", "harmless", "comply", "should_comply", "0", "false", "no", "good",
                           "helpful"})


class SuiteError(DataError):
    """An unknown suite name or an unusable suite file; the message lists the valid choices."""


@dataclass
class SuiteItem:
    """One prompt of a suite. ``group`` splits a suite's report (e.g. xstest ``safe`` vs ``unsafe``)."""

    id: str
    messages: list[Message]
    expected: Expected
    group: str
    category: str | None = None

    @property
    def text(self) -> str:
        from safealign.data.records import prompt_text

        return prompt_text(self.messages)


@dataclass
class Suite:
    """A named, versioned prompt list; ``samples`` responses are drawn per prompt."""

    name: str
    kind: SuiteKind
    version: str
    description: str
    license: str
    items: list[SuiteItem]
    samples: int = 1
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Hash of the prompts and expectations: two runs with the same fingerprint saw the same suite."""
        h = hashlib.sha256()
        for it in self.items:
            h.update(json.dumps([it.id, it.messages, it.expected, it.group], sort_keys=True).encode())
        return h.hexdigest()[:12]

    def describe(self) -> dict:
        groups: dict[str, int] = {}
        for it in self.items:
            groups[it.group] = groups.get(it.group, 0) + 1
        return {"name": self.name, "kind": self.kind, "version": self.version, "fingerprint": self.fingerprint,
                "prompts": len(self.items), "samples": self.samples, "groups": groups,
                "description": self.description, "license": self.license, "source": self.source}


@dataclass
class SuiteConfig(ConfigBase):
    """Sizes and sampling of the built-in suites (kept small enough for a CPU)."""

    harmful_split: str = option("test", help="AdvBench split used by the harmful suite (test = held out by hash)")
    harmful_size: int = option(0, help="use at most this many harmful prompts per data set (0 = the whole split)")
    harmful_extra: list[str] = option(
        default_factory=list, help="more harmful prompt data sets (e.g. safety-refusals) whose held-out split joins the "
        "harmful suite, each as its own group: refusal on kinds of request unlike AdvBench's (the headline stays AdvBench's)")
    harmful_samples: int = option(4, help="responses sampled per harmful prompt (k, for per-prompt risk)")
    xstest_contrasts: bool = option(
        True, help="also run XSTest's 200 unsafe contrast prompts (reported separately from the 250 safe ones)")
    xstest_size: int = option(0, help="use at most this many XSTest prompts per label (0 = all)")
    over_refusal_samples: int = option(1, help="responses sampled per XSTest prompt")
    helpful_split: str = option("test", help="AlpacaEval split the helpful sample is drawn from")
    helpful_size: int = option(100, help="size of the fixed AlpacaEval sample (capped by the split size)")
    helpful_samples: int = option(1, help="responses sampled per helpful prompt")
    custom_samples: int = option(1, help="responses sampled per prompt of a user suite file")

    def validate(self) -> None:
        for name in ("harmful_split", "helpful_split"):
            require(getattr(self, name) in ("train", "validation", "test", "all"),
                    f"{name} must be train, validation, test or all")
        for name in ("harmful_size", "xstest_size", "helpful_size"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0")
        require("advbench" not in self.harmful_extra, "harmful_extra lists data sets besides AdvBench, which is always in")
        for name in ("harmful_samples", "over_refusal_samples", "helpful_samples", "custom_samples"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1")


BUILTIN_SUITES = {
    "harmful": "AdvBench harmful behaviours, held-out split: a model should refuse or answer safely",
    "over-refusal": "XSTest: 250 safe prompts that look unsafe (should comply) + 200 unsafe contrasts",
    "helpful": "Fixed AlpacaEval sample: mean reward and win rate against a baseline",
}
ALIASES = {"advbench": "harmful", "xstest": "over-refusal", "alpaca-eval": "helpful", "overrefusal": "over-refusal"}
SUITE_VERSION = "1"
FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet")


def _stable_sample(records: list, size: int, salt: str) -> list:
    """A fixed subset that does not depend on file order: the ``size`` prompts with the smallest hash."""
    if size <= 0 or size >= len(records):
        return list(records)
    keyed = sorted(records, key=lambda r: hashlib.sha256(f"{salt}\x00{r.text}".encode()).hexdigest())
    chosen = {id(r) for r in keyed[:size]}
    return [r for r in records if id(r) in chosen]


def _item_id(prefix: str, rec, index: int) -> str:
    return f"{prefix}-{rec.id}" if rec.id else f"{prefix}-{hashlib.sha256(rec.text.encode()).hexdigest()[:10]}"


def _split(name: str, split: str) -> list:
    from safealign.data.registry import load_dataset

    return list(load_dataset(name, split=None if split == "all" else split))


def _harmful(cfg: SuiteConfig) -> Suite:
    names, items = ["advbench", *cfg.harmful_extra], []
    for name in names:
        # AdvBench keeps the salt and group its results always had; every other set is a group of its own
        salt, group = ("suite-harmful", "harmful") if name == "advbench" else (f"suite-harmful-{name}", name)
        recs = _stable_sample(_split(name, cfg.harmful_split), cfg.harmful_size, salt)
        items += [SuiteItem(_item_id(name, r, i), r.messages, "refuse", group, r.category) for i, r in enumerate(recs)]
    licence = "MIT" if not cfg.harmful_extra else "MIT (AdvBench); see `safealign data list` for the others"
    sources = ", ".join(f"{n} [{cfg.harmful_split}]" for n in names)
    return Suite("harmful", "harmful", SUITE_VERSION, BUILTIN_SUITES["harmful"], licence, items,
                 cfg.harmful_samples, sources)


def _over_refusal(cfg: SuiteConfig) -> Suite:
    recs = _split("xstest", "all")
    items = []
    for label, expected, group in (("safe", "comply", "safe"), ("unsafe", "refuse", "unsafe-contrast")):
        if label == "unsafe" and not cfg.xstest_contrasts:
            continue
        chosen = _stable_sample([r for r in recs if r.label == label], cfg.xstest_size, "suite-xstest")
        items += [SuiteItem(_item_id("xstest", r, i), r.messages, expected, group, r.category)
                  for i, r in enumerate(chosen)]
    return Suite("over-refusal", "over-refusal", SUITE_VERSION, BUILTIN_SUITES["over-refusal"], "CC BY 4.0",
                 items, cfg.over_refusal_samples, "xstest")


def _helpful(cfg: SuiteConfig) -> Suite:
    recs = _stable_sample(_split("alpaca-eval", cfg.helpful_split), cfg.helpful_size, "suite-helpful")
    items = [SuiteItem(_item_id("alpacaeval", r, i), r.messages, "comply", "helpful", r.category)
             for i, r in enumerate(recs)]
    return Suite("helpful", "helpful", SUITE_VERSION, BUILTIN_SUITES["helpful"],
                 "CC BY-NC 4.0 (non-commercial research only)", items, cfg.helpful_samples,
                 f"alpaca-eval [{cfg.helpful_split}]")


def _expected(label: str | None, where: str) -> Expected:
    key = (label or "").strip().lower()
    if key in REFUSE_LABELS:
        return "refuse"
    if key in COMPLY_LABELS:
        return "comply"
    raise SuiteError(f"{where}: label {label!r} is neither a 'should refuse' label ({', '.join(sorted(REFUSE_LABELS))})"
                     f" nor a 'should comply' label ({', '.join(sorted(COMPLY_LABELS))})")


def load_file_suite(path: str | Path, cfg: SuiteConfig | None = None, *, label_field: str | None = None,
                    text_field: str | None = None) -> Suite:
    """A user prompt file (CSV/TSV/JSON/JSONL/parquet, optionally gzipped) with a label column as a suite."""
    from safealign.data.loaders import load_prompts

    cfg = cfg or SuiteConfig()
    p = Path(path)
    if not p.is_file():
        raise SuiteError(f"suite file {p} does not exist or is not a file")
    records = load_prompts(p, text_field=text_field, label_field=label_field)
    if not records:
        raise SuiteError(f"suite file {p} holds no prompts")
    items = []
    for i, r in enumerate(records):
        if r.label is None:
            raise SuiteError(f"{p}, prompt {i + 1}: no label; a suite file needs a 'label' column saying whether "
                             "each prompt should be refused (harmful/unsafe) or answered (safe/benign)")
        exp = _expected(r.label, f"{p}, prompt {i + 1}")
        items.append(SuiteItem(_item_id(p.stem, r, i), r.messages, exp, r.label.strip().lower(), r.category))
    h = hashlib.sha256(p.read_bytes()).hexdigest()[:8]
    return Suite(p.stem, "custom", f"file-{h}", f"user suite from {p.name}", "(user file)", items,
                 cfg.custom_samples, str(p))


def load_suite(spec: str, cfg: SuiteConfig | None = None) -> Suite:
    """A built-in suite by name (``harmful``, ``over-refusal``, ``helpful``) or a user file path."""
    cfg = cfg or SuiteConfig()
    name = ALIASES.get(spec.strip().lower(), spec.strip().lower())
    if name == "harmful":
        return _harmful(cfg)
    if name == "over-refusal":
        return _over_refusal(cfg)
    if name == "helpful":
        return _helpful(cfg)
    p = Path(spec).expanduser()
    suffixes = [x.lower() for x in p.suffixes if x.lower() != ".gz"]
    if p.exists() or (suffixes and suffixes[-1] in FILE_SUFFIXES) or any(s in spec for s in ("/", "\\")):
        if not p.exists():
            raise SuiteError(f"suite file {p} not found")
        return load_file_suite(p, cfg)
    close = difflib.get_close_matches(name, [*BUILTIN_SUITES, *ALIASES], n=1, cutoff=0.5)
    hint = f" Did you mean '{ALIASES.get(close[0], close[0])}'?" if close else ""
    raise SuiteError(f"unknown suite '{spec}'.{hint} Built-in suites: {', '.join(BUILTIN_SUITES)}; "
                     "or give a path to a CSV/JSON/JSONL file of prompts with a label column")


def load_suites(specs: list[str] | tuple[str, ...], cfg: SuiteConfig | None = None) -> list[Suite]:
    """All suites of a run, checked up front so a typo fails before any generation starts."""
    suites = [load_suite(s, cfg) for s in specs]
    names = [s.name for s in suites]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SuiteError(f"suite names must be unique, got {', '.join(sorted(dup))} twice")
    return suites
