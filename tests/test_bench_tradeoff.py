"""bench/tradeoff.py: settings grouped by run-folder name, seed means, and the line through them (known answers)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("tradeoff", Path(__file__).resolve().parents[1] / "bench" / "tradeoff.py")
tradeoff = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tradeoff)


def _run(root: Path, name: str, refusal: float, over: float) -> Path:
    out = root / name / "eval"
    out.mkdir(parents=True)
    head = {"harmful_refusal_rate": {"value": refusal / 100}, "over_refusal_rate": {"value": over / 100},
            "win_rate": {"value": 0.5}}
    (out / "metrics.json").write_text(json.dumps({"headline": head}))
    return out


def test_settings_are_named_without_their_seed():
    assert tradeoff.setting_of(Path("runs/KYs3/eval")) == "KY"
    assert tradeoff.setting_of(Path("runs/X_s12")) == "X"
    assert tradeoff.setting_of(Path("runs/ws_B/eval")) == "ws_B"  # no trailing seed: kept whole


def test_the_line_goes_through_settings_that_only_trade_and_flags_one_below_it(tmp_path, capsys):
    # A, B, C sit on over = -20 + 0.5 * refusal (seed means; A's two seeds straddle it); D is 10 points below
    folders = [_run(tmp_path, "As0", 58, 8), _run(tmp_path, "As1", 62, 12), _run(tmp_path, "Bs0", 80, 20),
               _run(tmp_path, "Bs1", 80, 20), _run(tmp_path, "Cs0", 90, 25), _run(tmp_path, "Cs1", 90, 25),
               _run(tmp_path, "Ds0", 90, 15)]
    assert tradeoff.main([str(f) for f in folders] + ["--min-seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "over-refusal = -20.0 + 0.500 x refusal" in out and "predicts 25.0%" in out
    assert "| D (not fitted) | 1 | 90.0 | 15.0 | 50.0 | -10.0 |" in out
    assert "| A | 2 | 60.0 | 10.0 | 50.0 | +0.0 |" in out
    a, b = tradeoff.fit_line(np.array([60.0, 80.0, 90.0]), np.array([10.0, 20.0, 25.0]))
    assert (a, b) == pytest.approx((-20.0, 0.5))


def test_a_folder_without_an_evaluation_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="not a safealign evaluation"):
        tradeoff.main([str(tmp_path)])
