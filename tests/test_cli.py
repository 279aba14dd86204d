from __future__ import annotations

import json

import pytest

from safealign.cli.main import build_parser, main


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0, name
    assert "usage" in capsys.readouterr().out


def test_generate_writes_jsonl_and_config(tmp_path, tiny_llama_dir, capsys):
    out = tmp_path / "gen.jsonl"
    rc = main(["generate", "--prompt", "Hello", "--prompt", "Bye", "--model", str(tiny_llama_dir),
               "--dtype", "float32", "--sampling.max_new_tokens", "5", "--sampling.n", "2", "--out", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and {r["prompt"] for r in rows} == {"Hello", "Bye"}
    assert (tmp_path / "gen.jsonl.config.yaml").exists()


def test_bad_option_value_is_a_clear_error(tiny_llama_dir, capsys):
    rc = main(["generate", "--prompt", "x", "--model", str(tiny_llama_dir), "--sampling.temperature", "hot"])
    assert rc == 2 and "sampling.temperature: expected a number" in capsys.readouterr().err


def test_unknown_dataset_is_a_clear_error(capsys):
    rc = main(["data", "show", "advbenchh"])
    err = capsys.readouterr().err
    assert rc == 2 and "advbench" in err
