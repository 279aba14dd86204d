"""Typed, validated configuration: dataclasses loadable from YAML and overridable from the CLI.

Every config is a dataclass whose fields carry a ``help`` string in their metadata (use :func:`option`).
Nested dataclass fields are *sections*: ``--train.lr 1e-5`` on the command line, ``train: {lr: 1e-5}``
in YAML. Unknown keys are errors that name the closest valid key, because a silently ignored typo in a
safety-critical run (say ``treshold``) is worse than a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T", bound="ConfigBase")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says where and why."""


def option(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with mandatory documentation (shown by ``--help`` and in saved configs)."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def section(cls: type, *, help: str) -> Any:
    """A nested config section (a dataclass field holding another config)."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ConfigError naming ``where``."""
    inner, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required (got null)")
    origin = get_origin(inner)
    if origin is Literal:
        choices = get_args(inner)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}.{_suggest(str(value), map(str, choices))}")
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if inner is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if inner is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if inner is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        return str(value)
    if origin in (list, tuple) or inner in (list, tuple):
        (item_tp, *_) = get_args(inner) or (Any,)
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(v, item_tp, f"{where}[{i}]") if item_tp is not Any else v for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or inner is tuple) else items
    if origin is dict or inner is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


@dataclasses.dataclass
class ConfigBase:
    """Base class of every safealign config: YAML I/O, strict keys, validation hooks."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values that are out of range; sections validate themselves."""

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in fields:
                raise ConfigError(f"{where}: unknown option '{key}'.{_suggest(str(key), fields)}"
                                  f" Valid options: {', '.join(sorted(fields))}")
            tp = hints[key]
            sub, _ = _strip_optional(tp)
            if _is_config(sub):
                if value is None:
                    kwargs[key] = None
                    continue
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{where}.{key}: expected a section (mapping), got {value!r}")
                factory = fields[key].default_factory
                # a section's defaults are those of its field (e.g. rollout sampling), not of its class
                base = factory().to_dict() if factory is not dataclasses.MISSING else {}
                kwargs[key] = sub.from_dict(_deep_merge(base, value), f"{where}.{key}")
            else:
                kwargs[key] = _coerce(value, tp, f"{where}.{key}")
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    @classmethod
    def from_yaml(cls: type[T], path: str | Path, overrides: Mapping[str, Any] | None = None) -> T:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{line}: invalid YAML: {getattr(err, 'problem', err)}") from None
        merged = merge_dotted(data, overrides or {})
        return cls.from_dict(merged, where=str(path))

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the effective config next to an output so every result can be reproduced."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def merge_dotted(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``{"train.lr": 1e-5}``-style overrides to a nested mapping (copy, not in place)."""
    out: dict[str, Any] = json.loads(json.dumps(dict(base), default=str))
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
                node[p] = child
            node = child
        node[leaf] = value
    return out


def iter_options(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, dataclasses.Field]]:
    """Yield ``(dotted_name, type, field)`` for every leaf option of a config class."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        sub, _ = _strip_optional(hints[f.name])
        if _is_config(sub):
            yield from iter_options(sub, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], f


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Expose every option of ``cls`` as ``--dotted.name VALUE`` plus ``--config FILE``.

    Values stay strings here; :func:`config_from_args` converts and validates them with the YAML rules.
    """
    parser.add_argument("--config", type=Path, default=None, help="YAML file with options (CLI flags override it)")
    group = parser.add_argument_group("options (also settable in the YAML file)")
    for name, tp, f in iter_options(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(see section)"
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        inner, _ = _strip_optional(tp)
        choices = f" {{{','.join(map(str, get_args(inner)))}}}" if get_origin(inner) is Literal else ""
        group.add_argument(
            f"--{name}", dest=f"cfg::{name}", default=argparse.SUPPRESS, metavar="VALUE",
            help=f"{f.metadata.get('help', '')}{choices} [default: {default}]".replace("%", "%%"),
        )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    overrides = {k[len("cfg::"):]: v for k, v in vars(args).items() if k.startswith("cfg::")}
    if getattr(args, "config", None) is not None:
        return cls.from_yaml(args.config, overrides)
    return cls.from_dict(merge_dotted({}, overrides), where="command line")


class SuggestingArgumentParser(argparse.ArgumentParser):
    """argparse that answers a misspelled ``--option`` with the closest valid one."""

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            known = _all_option_strings(self)
            bad = [w for w in message.split(":", 1)[1].split() if w.startswith("--")]
            hints = [f"'{b}' -> did you mean '{c[0]}'?" for b in bad
                     if (c := difflib.get_close_matches(b.split("=")[0], known, n=1, cutoff=0.6))]
            if hints:
                message += "\n  " + "\n  ".join(hints)
        super().error(message)


def _all_option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Option strings of a parser and of all its subcommands (extras surface at the top parser)."""
    out: list[str] = []
    for action in parser._actions:
        out.extend(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                out.extend(_all_option_strings(child))
    return out


def require(condition: bool, message: str) -> None:
    """Validation helper for ``ConfigBase.validate`` implementations."""
    if not condition:
        raise ConfigError(message)
