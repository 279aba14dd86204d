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


def test_hc_rlhf_runs_the_safety_test_with_the_default_cost_model(tmp_path, monkeypatch):
    """`align --method hc-rlhf`: stage 1 on candidate prompts only, then stage 2 with the trainer's cost model."""
    import safealign.certify.certificate as certificate
    import safealign.train.trainer as trainer

    seen: dict = {}

    class FakeTrainer:
        def __init__(self, cfg, harmful_prompts=None, benign_prompts=None, **kw):
            seen["method"], seen["harmful"] = cfg.constraint.method, harmful_prompts
            self.cost_scorer = "the trainer's cost scorer"

        def train(self, resume=False):
            return {"policy_dir": str(tmp_path / "model")}

    def fake_certify(cfg, scorer=None):
        cfg.validate()  # a config that certify itself would reject must not get here
        seen["cfg"], seen["scorer"] = cfg, scorer
        return type("Outcome", (), {"exit_code": 3})()

    monkeypatch.setattr(trainer, "RLTrainer", FakeTrainer)
    monkeypatch.setattr(certificate, "run_certify", fake_certify)
    rc = main(["align", "--method", "hc-rlhf", "--out_dir", str(tmp_path / "run"), "--bound", "hoeffding",
               "--constraint.hc_cost_transform", "sigmoid", "--constraint.threshold", "0.3"])
    assert rc == 3 and seen["method"] == "pessimistic" and seen["scorer"] == "the trainer's cost scorer"
    cfg = seen["cfg"]
    assert cfg.cost_model == "cost" and cfg.bound == "hoeffding" and cfg.cost_transform == "sigmoid"
    assert cfg.threshold == 0.3 and cfg.model == str(tmp_path / "model")
    _, safety = certificate.candidate_and_safety_prompts(list(cfg.prompts), cfg.safety_fraction)
    held_out = {m[-1]["content"] for m in safety}
    assert seen["harmful"] and not held_out & {m[-1]["content"] for m in seen["harmful"]}  # never trained on
