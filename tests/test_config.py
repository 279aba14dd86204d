from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from safealign.config import (
    ConfigBase,
    ConfigError,
    SuggestingArgumentParser,
    add_config_arguments,
    config_from_args,
    option,
    require,
    section,
)


@dataclass
class Inner(ConfigBase):
    lr: float = option(1e-5, help="learning rate")
    steps: int = option(10, help="steps")
    tags: list[str] = option(default_factory=list, help="tags")

    def validate(self) -> None:
        require(self.lr > 0, "lr must be > 0")


@dataclass
class Outer(ConfigBase):
    name: str = option("x", help="run name")
    mode: Literal["a", "b"] = option("a", help="mode")
    flag: bool = option(False, help="a flag")
    limit: int | None = option(None, help="optional limit")
    train: Inner = section(Inner, help="training")


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run1\ntrain:\n  lr: 0.001\n  tags: [a, b]\n")
    cfg = Outer.from_yaml(p, {"train.steps": "7", "flag": "true", "limit": "none"})
    assert cfg.name == "run1" and cfg.train.lr == 0.001 and cfg.train.steps == 7
    assert cfg.train.tags == ["a", "b"] and cfg.flag is True and cfg.limit is None


def test_unknown_key_suggests_closest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown option 'lrr'.*Did you mean 'lr'"):
        Outer.from_yaml(p)


def test_type_and_range_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer"):
        Outer.from_dict({"train": {"steps": "many"}})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        Outer.from_dict({"train": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"mode: 'c' is not one of"):
        Outer.from_dict({"mode": "c"})
    with pytest.raises(ConfigError, match="expected an integer"):
        Outer.from_dict({"train": {"steps": 2.5}})


def test_invalid_yaml_reports_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: a\ntrain: [\n  lr: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: invalid YAML"):
        Outer.from_yaml(p)


def test_save_round_trip(tmp_path):
    cfg = Outer.from_dict({"name": "r", "train": {"lr": 0.5, "tags": ["t"]}})
    path = cfg.save(tmp_path / "out" / "config.yaml")
    assert Outer.from_yaml(path) == cfg


def test_cli_parser_and_suggestion(capsys):
    parser = SuggestingArgumentParser(prog="t", allow_abbrev=False)
    add_config_arguments(parser, Outer)
    cfg = config_from_args(Outer, parser.parse_args(["--train.lr", "0.2", "--mode", "b"]))
    assert cfg.train.lr == 0.2 and cfg.mode == "b"
    with pytest.raises(SystemExit):
        parser.parse_args(["--train.lrr", "0.2"])
    assert "did you mean '--train.lr'" in capsys.readouterr().err
