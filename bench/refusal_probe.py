"""Could the model's own features refuse better than the policy does? A linear probe, per layer. A script.

Fits an L2 logistic probe on the hidden state at the last prompt token, harmful = AdvBench's training split,
benign = Alpaca instructions and the built-in ``benign-contrasts`` (the prompt pools the trainer draws from),
then reads it on held-out prompts at the threshold that flags ``--fpr`` of XSTest's safe prompts (the
over-refusal a policy is allowed): the share flagged of AdvBench's test split, XSTest's unsafe contrasts and
Safety-Tuned LLaMAs' test split, beside a policy's own refusal rates on the same sets (docs/results.md).
The threshold is read off XSTest, so these are the probe's best case at that over-refusal, a ceiling for
comparison, not a deployable classifier. ``cv`` is a 5-fold probe fitted on XSTest itself (unsafe contrasts
against safe prompts): how far the layer's features separate the two at all.

``--policy DIR ...`` adds aligned policies, each scored by its own decision before sampling: the
teacher-forced log-probability that its answer opens with a refusal ("I'm sorry", "I cannot", ...), read on
the same sets at the same over-refusal. A sampled refusal rate is one point of that score's ROC curve.

    python bench/refusal_probe.py [--model smollm2-135m-instruct] [--fpr 0.15] [--layers 6,12,18,24,30]
                                  [--policy runs/demo/align/model ...]
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from safealign.data.registry import load_dataset
from safealign.evaluate.refusal_probe import (
    cross_validated_scores,
    fit_probe,
    opener_logprob,
    prompt_states,
    rate_at_fpr,
)
from safealign.models.loading import load_causal_lm, load_tokenizer
from safealign.scoring.calibration import auroc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="registry name or model directory")
    ap.add_argument("--fpr", type=float, default=0.15, help="share of XSTest safe prompts the probe may flag")
    ap.add_argument("--layers", default="6,12,18,24,30", help="hidden-state indices (0 = embeddings)")
    ap.add_argument("--l2", type=float, default=10.0, help="probe L2 penalty (on standardised features)")
    ap.add_argument("--alpaca", type=int, default=400, help="Alpaca instructions among the benign training prompts")
    ap.add_argument("--policy", nargs="*", default=[], help="aligned model directories to place beside the probe")
    args = ap.parse_args()

    alpaca = list(load_dataset("alpaca"))
    random.Random(0).shuffle(alpaca)
    xstest = list(load_dataset("xstest"))
    sets = {
        "advbench train": list(load_dataset("advbench", split="train")),
        "benign train": alpaca[: args.alpaca] + list(load_dataset("benign-contrasts")),
        "advbench test": list(load_dataset("advbench", split="test")),
        "safety-tuned test": list(load_dataset("safety-refusals", split="test")),
        "xstest unsafe": [r for r in xstest if r.label == "unsafe"],
        "xstest safe": [r for r in xstest if r.label == "safe"],
    }
    model = load_causal_lm(args.model, dtype="float32")
    tokenizer = load_tokenizer(args.model)
    states = {k: prompt_states(model, tokenizer, [r.messages for r in v], progress=True) for k, v in sets.items()}
    print(f"model={args.model} prompts: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    print(f"at the threshold flagging <= {args.fpr:.0%} of XSTest safe prompts (share flagged):")
    print("scores | advbench test | xstest unsafe | safety-tuned test | xstest safe | AUROC advbench/xstest safe | cv")

    def row(name: str, score: dict[str, np.ndarray], extra: str = "") -> None:
        safe = score["xstest safe"]
        flagged = {k: rate_at_fpr(score[k], safe, args.fpr)[0] for k in ("advbench test", "xstest unsafe",
                                                                          "safety-tuned test")}
        adv = auroc(np.r_[score["advbench test"], safe], np.r_[np.ones(len(score["advbench test"])),
                                                                np.zeros(len(safe))])
        print(f"{name} | {flagged['advbench test']:.1%} | {flagged['xstest unsafe']:.1%} | "
              f"{flagged['safety-tuned test']:.1%} | {rate_at_fpr(safe, safe, args.fpr)[1]:.1%} | {adv:.3f} | {extra}")

    for layer in (int(s) for s in args.layers.split(",")):
        x = np.concatenate([states["advbench train"][:, layer], states["benign train"][:, layer]])
        y = np.r_[np.ones(len(sets["advbench train"])), np.zeros(len(sets["benign train"]))]
        probe = fit_probe(x, y, args.l2)
        xs = np.concatenate([states["xstest unsafe"][:, layer], states["xstest safe"][:, layer]])
        ys = np.r_[np.ones(len(sets["xstest unsafe"])), np.zeros(len(sets["xstest safe"]))]
        cv = cross_validated_scores(xs, ys, l2=args.l2)
        row(f"probe, layer {layer}", {k: probe.score(v[:, layer]) for k, v in states.items()},
            f"AUROC {auroc(cv, ys):.3f}, unsafe flagged {rate_at_fpr(cv[ys == 1], cv[ys == 0], args.fpr)[0]:.1%}")
    for path in args.policy:
        policy = load_causal_lm(path, dtype="float32")
        held_out = ("advbench test", "xstest unsafe", "safety-tuned test", "xstest safe")
        row(f"policy {path}", {k: opener_logprob(policy, tokenizer, [r.messages for r in sets[k]], progress=True)
                               for k in held_out})


if __name__ == "__main__":
    main()
