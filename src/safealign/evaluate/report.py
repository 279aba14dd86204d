"""Reports a person can read: report.md and a self-contained report.html (plots embedded as base64 PNGs).

Both are rendered from one list of blocks, so the two never disagree. ``write_report([dir, ...])`` compares
finished runs side by side from their metrics.json and generations.jsonl alone: no model is loaded.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import Estimate

# ============================================================================================ blocks


@dataclass
class Block:
    kind: str  # h1 | h2 | h3 | p | table | img | example | pre
    data: Any


def _est(d: dict | None, pct: bool = True) -> str:
    if not d:
        return "n/a"
    return Estimate(d["value"], d["low"], d["high"], d["n"]).fmt(pct=pct)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


# ============================================================================================ plots
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def pareto_plot(runs: Sequence[dict]) -> bytes | None:
    """Harmful compliance vs over-refusal, one point per run (with CIs); lower-left is better."""
    pts = []
    for r in runs:
        h = r["metrics"]["headline"]
        if "harmful_compliance_rate" in h and "over_refusal_rate" in h:
            pts.append((r["label"], h["over_refusal_rate"], h["harmful_compliance_rate"]))
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    for i, (label, x, y) in enumerate(pts):
        ax.errorbar(100 * x["value"], 100 * y["value"],
                    xerr=[[100 * (x["value"] - x["low"])], [100 * (x["high"] - x["value"])]],
                    yerr=[[100 * (y["value"] - y["low"])], [100 * (y["high"] - y["value"])]],
                    fmt="o", capsize=4, color=f"C{i}", label=label, markersize=8)
    xs = np.array([100 * p[1]["value"] for p in pts])
    ys = np.array([100 * p[2]["value"] for p in pts])
    front = [i for i in range(len(pts)) if not any((xs[j] <= xs[i] and ys[j] <= ys[i]) and (xs[j] < xs[i] or
                                                   ys[j] < ys[i]) for j in range(len(pts)))]
    front = list({(xs[i], ys[i]): i for i in front}.values())  # identical points draw no front
    if len(front) > 1:
        order = sorted(front, key=lambda i: xs[i])
        ax.plot(xs[order], ys[order], "--", color="grey", lw=1, label="Pareto front")
    ax.set_xlabel("over-refusal rate: safe prompts refused (%)")
    ax.set_ylabel("harmful-compliance rate on harmful prompts (%)")
    ax.set_title("Safety vs over-refusal (lower-left is better)")
    top_x = max([10.0] + [100 * p[1]["high"] for p in pts])
    top_y = max([10.0] + [100 * p[2]["high"] for p in pts])
    ax.set_xlim(-0.04 * top_x, min(102.0, 1.08 * top_x))
    ax.set_ylim(-0.04 * top_y, min(102.0, 1.08 * top_y))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def cost_histogram(runs: Sequence[dict], judge: str, tau: float = 0.0) -> bytes | None:
    """Distribution of per-response cost on prompts that should be refused vs prompts that should be answered."""
    plt = _plt()
    series = []
    for r in runs:
        rows = [g for g in r["rows"] if g.get("role", "model") == "model" and judge in g.get("harm", {})]
        for expected, name in (("refuse", "should refuse"), ("comply", "should answer")):
            vals = [g["harm"][judge]["cost"] for g in rows if g["expected"] == expected]
            if vals:
                series.append((f"{r['label']}: {name}" if len(runs) > 1 else name, np.array(vals), expected))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    lo = min(s[1].min() for s in series)
    hi = max(s[1].max() for s in series)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
    for i, (label, vals, _expected) in enumerate(series):
        ax.hist(vals, bins=bins, histtype="step" if len(runs) > 1 else "stepfilled",
                alpha=0.9 if len(runs) > 1 else 0.45, lw=1.6, color=f"C{i}", label=f"{label} (n={len(vals)})",
                density=True)
    ax.axvline(tau, color="red", ls="--", lw=1, label=f"unsafe threshold tau = {tau:g}")
    ax.set_xlabel(f"cost under harm judge '{judge}' (> tau = unsafe)")
    ax.set_ylabel("density")
    ax.set_title("Cost of responses")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def violation_plot(runs: Sequence[dict], judge: str) -> bytes | None:
    """Per-prompt P(unsafe) on harmful prompts, sorted: the share above tau is the violation rate."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    tau = None
    drawn = False
    for i, r in enumerate(runs):
        for s in r["metrics"]["suites"].values():
            for gname, g in s["groups"].items():
                risk = g.get("harm", {}).get(judge, {}).get("risk")
                if not risk or s["suite"]["kind"] not in ("harmful", "custom"):
                    continue
                p = np.sort(np.array(risk["p_unsafe"]))[::-1]
                if p.size == 0:
                    continue
                tau = risk["tau"]
                x = np.arange(p.size + 1) / p.size * 100  # prompt i covers [i/n, (i+1)/n) of the axis
                p = np.append(p, p[-1])
                label = f"{r['label']}: {s['suite']['name']}" + (f"/{gname}" if gname != s["suite"]["name"] else "")
                ax.step(x, p, where="post", color=f"C{i}", lw=1.8,
                        label=f"{label} (violation {100 * risk['violation_rate']['value']:.0f}%)")
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(tau, color="red", ls="--", lw=1, label=f"tau = {tau:g}")
    ax.set_xlabel("prompts, sorted by unsafe probability (%)")
    ax.set_ylabel("per-prompt P(unsafe), mean over k samples")
    ax.set_ylim(0, 1)
    ax.set_title("Per-prompt risk on harmful prompts")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def reward_plot(runs: Sequence[dict]) -> bytes | None:
    """Reward on the helpful suite: the model vs its baseline (per run)."""
    plt = _plt()
    series = []
    for r in runs:
        for role in ("model", "baseline"):
            vals = [g["reward"] for g in r["rows"] if g.get("role", "model") == role and "reward" in g]
            if vals:
                series.append((f"{r['label']} ({role})" if role == "baseline" or len(runs) > 1 else r["label"],
                               np.array(vals)))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    lo = min(v.min() for _, v in series)
    hi = max(v.max() for _, v in series)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 26)
    for i, (label, vals) in enumerate(series):
        ax.hist(vals, bins=bins, histtype="step", lw=1.8, color=f"C{i}", label=f"{label}: mean {vals.mean():.2f}")
    ax.set_xlabel("reward (helpful suite)")
    ax.set_ylabel("responses")
    ax.set_title("Reward of responses to helpful prompts")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


# ============================================================================================ content
def _judge_blocks(m: dict) -> list[Block]:
    j = m["judges"]
    out = [Block("h2", "Judges")]
    ref = j["refusal"]
    out.append(Block("p", f"**Refusal judge:** `{ref['name']}`" + (f" ({ref['rule']})" if ref.get("rule") else "")
                     + ". Partial refusals (a refusal statement anywhere, or a lecturing non-answer at the start) "
                       "count as refusals, as in XSTest."))
    agree = ref.get("heldout_agreement") or ref.get("classifier", {}).get("heldout_agreement")
    if agree:
        rows = [[name, _pct(a["accuracy"]), _pct(a["refusal_recall"]), _pct(a["compliance_recall"]),
                 f"{a['kappa']:.2f}", str(a["n"])] for name, a in agree.items()]
        out.append(Block("p", "Held-out agreement of the refusal judge with its labels (test split by hash, never "
                              "trained on):"))
        out.append(Block("table", (["judge", "accuracy", "refusals caught", "compliance kept", "Cohen's kappa",
                                    "n"], rows)))
    for h in j["harm"]:
        extra = ""
        if h.get("heldout"):
            ho = h["heldout"]
            extra = (f"; held-out accuracy {_pct(ho['accuracy'])}, pair accuracy {_pct(ho['pair_accuracy'])} on "
                     f"{ho['pairs']} PKU-SafeRLHF pairs")
            if ho.get("benign_n"):
                extra += f", {_pct(ho['benign_judged_safe'])} of {ho['benign_n']} benign HH-RLHF answers judged safe"
        req = f" (requested '{h['requested']}')" if h.get("requested") else ""
        out.append(Block("p", f"**Harm judge** `{h['name']}`{req}: {h.get('source', h.get('scorer'))}; unsafe when "
                              f"cost > {h['tau']:g}{extra}."))
    out.append(Block("p", "**Reward model:** " + (f"{j['reward']['source']}" if j.get("reward") else "none")))
    for note in m.get("notes", []):
        out.append(Block("p", f"Note: {note}"))
    return out


def _headline_rows(m: dict) -> list[list[str]]:
    h = m["headline"]
    rows = []
    spec = [("harmful_refusal_rate", "Harmful: refusal rate", True),
            ("harmful_compliance_rate", f"Harmful: harmful-compliance rate ({h.get('primary_harm_judge')})", True),
            ("harmful_mean_cost", "Harmful: mean cost", False),
            ("cvar_cost", "Harmful: CVaR of cost (worst tail)", False),
            ("violation_rate", "Harmful: per-prompt violation rate", True),
            ("any_violation_rate", "Harmful: prompts with >= 1 harmful-compliant sample", True),
            ("over_refusal_rate", "Over-refusal: safe (XSTest) prompts refused", True),
            ("contrast_refusal_rate", "XSTest unsafe contrasts: refusal rate", True),
            ("mean_reward", "Helpful: mean reward", False),
            ("baseline_mean_reward", "Helpful: baseline mean reward", False),
            ("win_rate", "Helpful: win rate vs baseline", True)]
    for key, label, pct in spec:
        if key in h:
            rows.append([label, _est(h[key], pct)])
    for group, est in h.get("other_harmful_refusal_rate", {}).items():
        rows.append([f"Harmful ({group}): refusal rate", _est(est, True)])
    for judge, est in h.get("harmful_compliance_by_judge", {}).items():
        if judge != h.get("primary_harm_judge"):
            rows.append([f"Harmful: harmful-compliance rate ({judge})", _est(est, True)])
    return rows


def _suite_blocks(m: dict) -> list[Block]:
    out = [Block("h2", "Suites")]
    for s in m["suites"].values():
        d = s["suite"]
        out.append(Block("h3", f"{d['name']} (v{d['version']}, {d['fingerprint']})"))
        out.append(Block("p", f"{d['description']}. Source: {d['source']}; licence: {d['license']}; "
                              f"{d['prompts']} prompts x {d['samples']} sample(s)."))
        judges = sorted({j for g in s["groups"].values() for j in g["harm"]})
        head = ["group", "expected", "prompts", "refusal rate"]
        for j in judges:
            head += [f"harmful compliance ({j})", f"unsafe ({j})", f"mean cost ({j})"]
        has_reward = any("mean_reward" in g for g in s["groups"].values())
        if has_reward:
            head += ["mean reward", "win rate vs baseline"]
        rows = []
        for gname, g in s["groups"].items():
            row = [gname, g["expected"], str(g["prompts"]), _est(g["refusal_rate"])]
            for j in judges:
                hj = g["harm"].get(j)
                hc = _est(hj["harmful_compliance_rate"]) if hj and g["expected"] == "refuse" else "-"
                row += [hc, _est(hj["unsafe_rate"]), _est(hj["mean_cost"], False)] if hj else ["n/a"] * 3
            if has_reward:
                row += [_est(g.get("mean_reward"), False), _est(g.get("win_rate"))]
            rows.append(row)
        out.append(Block("table", (head, rows)))
        risk_rows = []
        for gname, g in s["groups"].items():
            for j, hj in g["harm"].items():
                r = hj.get("risk")
                if r:
                    q = r["quantiles"]
                    risk_rows.append([gname, j, _est(r["violation_rate"]), _est(r["any_violation_rate"]),
                                      _est(r["mean_cost"], False), _est(r["cvar_cost"], False),
                                      " / ".join(f"{q[k]:.2f}" for k in ("q10", "q50", "q90") if k in q)])
        if risk_rows:
            tau = next(hj["risk"]["tau"] for g in s["groups"].values() for hj in g["harm"].values() if "risk" in hj)
            tail = next(hj["risk"]["tail"] for g in s["groups"].values() for hj in g["harm"].values() if "risk" in hj)
            out.append(Block("p", f"Per-prompt risk (k = {d['samples']} samples per prompt): violation = share of "
                                  f"prompts whose mean P(unsafe) exceeds {tau:g}; CVaR = mean cost of the worst "
                                  f"{100 * tail:g}% of samples. A low mean cost with a high violation rate or CVaR "
                                  "is 'safety compensation': safe on average, unsafe on some prompts."))
            out.append(Block("table", (["group", "harm judge", "violation rate", ">= 1 harmful sample", "mean cost",
                                        f"CVaR_{tail:g}", "P(unsafe) q10 / q50 / q90"], risk_rows)))
    return out


def _accounting_block(m: dict) -> list[Block]:
    c = m["cost_accounting"]
    rows = [["responses judged", str(c["responses"])], ["tokens generated (all responses)", str(c["tokens_generated"])],
            ["generation time recorded with the responses", f"{c['generation_seconds_recorded']:.0f} s"],
            ["new responses this run", str(c["new_responses_this_run"])],
            ["responses reused from the cache", str(c["cached_responses"])],
            ["generation time this run", f"{c['generation_seconds_this_run']:.0f} s"],
            ["judging time", f"{c['judge_seconds']:.0f} s"], ["wall time", f"{c['wall_seconds']:.0f} s"]]
    return [Block("h2", "Cost accounting"), Block("table", (["", "value"], rows))]


def run_blocks(m: dict, plots: dict[str, bytes | None]) -> list[Block]:
    """The single-run report."""
    model = m["model"]
    blocks = [Block("h1", f"safealign evaluation: {model['name']}"),
              Block("p", f"Model id `{model['id']}`; decoding: " + ", ".join(
                  f"{k}={v}" for k, v in model["decoding"].items() if k in ("temperature", "top_p", "top_k",
                                                                           "max_new_tokens", "seed", "kind"))
                    + (f"; baseline `{m['baseline']['name']}`" if m.get("baseline") else "")
                    + f". Generated {m.get('created', '')}."),
              Block("h2", "Headline (95% bootstrap CIs over prompts)"),
              Block("table", (["metric", "value [95% CI]"], _headline_rows(m)))]
    for key, caption in (("pareto", "Harmful compliance vs over-refusal (Pareto view)."),
                         ("violation", "Per-prompt unsafe probability on harmful prompts."),
                         ("cost", "Cost histograms."), ("reward", "Reward on the helpful suite.")):
        if plots.get(key):
            blocks.append(Block("img", (key, plots[key], caption)))
    blocks += _suite_blocks(m) + _judge_blocks(m) + _accounting_block(m)
    ex = m.get("examples", [])
    if ex:
        blocks.append(Block("h2", f"{len(ex)} random judged examples"))
        blocks.append(Block("p", "Drawn at random (seeded) from all judged responses, so a reader can check the "
                                 "judges. Every response is in generations.jsonl."))
        blocks += [Block("example", e) for e in ex]
    return blocks


def compare_blocks(runs: Sequence[dict], plots: dict[str, bytes | None]) -> list[Block]:
    """Side-by-side comparison of several runs."""
    blocks = [Block("h1", "safealign evaluation: comparison"),
              Block("p", "Runs: " + "; ".join(f"**{r['label']}** ({r['dir']}, model id `{r['metrics']['model']['id']}`)"
                                              for r in runs))]
    keys: list[str] = []
    labels: dict[str, str] = {}
    for r in runs:
        for label, _ in _headline_rows(r["metrics"]):
            if label not in labels:
                keys.append(label)
                labels[label] = label
    rows = []
    for k in keys:
        row = [k]
        for r in runs:
            vals = dict(_headline_rows(r["metrics"]))
            row.append(vals.get(k, "n/a"))
        rows.append(row)
    blocks += [Block("h2", "Headline (95% bootstrap CIs over prompts)"),
               Block("table", (["metric", *[r["label"] for r in runs]], rows))]
    fps = {r["label"]: {n: s["suite"]["fingerprint"] for n, s in r["metrics"]["suites"].items()} for r in runs}
    if len({json.dumps(v, sort_keys=True) for v in fps.values()}) > 1:
        blocks.append(Block("p", "Warning: the runs did not all see the same suites (fingerprints differ): "
                                 + "; ".join(f"{k}: {v}" for k, v in fps.items())))
    judges = {r["label"]: r["metrics"]["judges"]["refusal"]["name"] + " / " + ", ".join(
        h["name"] for h in r["metrics"]["judges"]["harm"]) for r in runs}
    if len(set(judges.values())) > 1:
        blocks.append(Block("p", "Warning: the runs used different judges: " + "; ".join(f"{k}: {v}"
                                                                                        for k, v in judges.items())))
    for key, caption in (("pareto", "One point per run: lower-left is better."),
                         ("violation", "Per-prompt unsafe probability on harmful prompts."),
                         ("cost", "Cost histograms."), ("reward", "Reward on the helpful suite.")):
        if plots.get(key):
            blocks.append(Block("img", (key, plots[key], caption)))
    return blocks


# ============================================================================================ rendering
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], image_dir: str | None = "plots") -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(b.kind[1])} {b.data}\n")
        elif b.kind == "p":
            out.append(f"{b.data}\n")
        elif b.kind == "table":
            head, rows = b.data
            out.append("| " + " | ".join(map(_md_cell, head)) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            out.append("")
        elif b.kind == "img" and image_dir is not None:
            name, _, caption = b.data
            out.append(f"![{caption}]({image_dir}/{name}.png)\n")
        elif b.kind == "example":
            out.append(_example_md(b.data))
    return "\n".join(out)


def _verdict(e: dict) -> str:
    parts = [("REFUSED" if e["refusal"]["refused"] else "complied") + f" ({e['refusal']['source']}, "
             f"p={e['refusal']['score']:.2f})"]
    for j, h in e.get("harm", {}).items():
        parts.append(f"{j}: cost {h['cost']:+.2f} -> {'UNSAFE' if h['unsafe'] else 'safe'}")
    if "reward" in e:
        parts.append(f"reward {e['reward']:.2f}")
    return "; ".join(parts)


def _clip(text: str, n: int = 700) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + " [...]"


def _example_md(e: dict) -> str:
    quote = "\n".join("> " + line for line in _clip(e["response"]).splitlines() or [""])
    return (f"**[{e['suite']}/{e['group']}, expected: {e['expected']}]** {_clip(e['prompt'], 300)}\n\n{quote}\n\n"
            f"*Judged:* {_verdict(e)}\n")


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:24px auto;padding:0 18px;
color:#1d2330;line-height:1.45}
h1{border-bottom:3px solid #3b6fd8;padding-bottom:6px}h2{margin-top:34px;border-bottom:1px solid #ccd;padding-bottom:3px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13.5px}th,td{border:1px solid #c9cfdb;padding:4px 9px;
text-align:left;vertical-align:top}th{background:#eef2fa}tr:nth-child(even) td{background:#fafbfd}
figure{margin:14px 0;display:inline-block;vertical-align:top}figcaption{font-size:13px;color:#555}
img{max-width:100%;border:1px solid #dde}code{background:#f1f3f7;padding:1px 4px;border-radius:3px}
.ex{border:1px solid #d5dae5;border-radius:6px;padding:8px 12px;margin:10px 0;background:#fcfcfe}
.ex .meta{font-size:12px;color:#556}.ex .prompt{font-weight:600;margin:4px 0}
.ex pre{white-space:pre-wrap;word-wrap:break-word;background:#f4f6fa;padding:8px;border-radius:4px;font-size:13px;
margin:6px 0}.b{display:inline-block;border-radius:4px;padding:1px 7px;font-size:12px;margin-right:6px;color:#fff}
.ref{background:#2f7d4f}.com{background:#8a6d1f}.uns{background:#b23a3a}.saf{background:#5b6b8c}
"""


def _inline_md(text: str) -> str:
    """The few inline markups the blocks use: **bold** and `code`, on escaped text."""
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _example_html(e: dict) -> str:
    badges = ['<span class="b ref">refused</span>' if e["refusal"]["refused"] else
              '<span class="b com">complied</span>']
    for j, h in e.get("harm", {}).items():
        cls, word = ("uns", "unsafe") if h["unsafe"] else ("saf", "safe")
        badges.append(f'<span class="b {cls}">{html.escape(j)}: {word} ({h["cost"]:+.2f})</span>')
    return (f'<div class="ex"><div class="meta">{html.escape(e["suite"])} / {html.escape(e["group"])} &middot; '
            f'expected: {html.escape(e["expected"])} &middot; sample {e.get("sample", 0)}</div>'
            f'<div class="prompt">{html.escape(_clip(e["prompt"], 300))}</div>'
            f'<pre>{html.escape(_clip(e["response"]))}</pre><div>{"".join(badges)}</div>'
            f'<div class="meta">{html.escape(_verdict(e))}</div></div>')


def render_html(blocks: Sequence[Block], title: str) -> str:
    body: list[str] = []
    imgs: list[str] = []

    def flush() -> None:
        if imgs:
            body.append("<div>" + "".join(imgs) + "</div>")
            imgs.clear()

    for b in blocks:
        if b.kind != "img":
            flush()
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{html.escape(b.data)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline_md(b.data)}</p>")
        elif b.kind == "table":
            head, rows = b.data
            body.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline_md(str(c))}</td>" for c in r) + "</tr>"
                                  for r in rows) + "</table>")
        elif b.kind == "img":
            name, png, caption = b.data
            data = base64.b64encode(png).decode()
            imgs.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        elif b.kind == "example":
            body.append(_example_html(b.data))
    flush()
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")


# ============================================================================================ writers
def _plots(runs: Sequence[dict]) -> dict[str, bytes | None]:
    judge = runs[0]["metrics"]["headline"].get("primary_harm_judge")
    tau = next((h["tau"] for h in runs[0]["metrics"]["judges"]["harm"] if h["name"] == judge), 0.0)
    out: dict[str, bytes | None] = {"pareto": pareto_plot(runs)}
    if judge:
        out["violation"] = violation_plot(runs, judge)
        out["cost"] = cost_histogram(runs, judge, tau)
    out["reward"] = reward_plot(runs)
    return out


def _write(out_dir: Path, blocks: list[Block], plots: dict[str, bytes | None], title: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    pdir = out_dir / "plots"
    pdir.mkdir(exist_ok=True)
    for name, png in plots.items():
        if png:
            (pdir / f"{name}.png").write_bytes(png)
    (out_dir / "report.md").write_text(render_markdown(blocks))
    path = out_dir / "report.html"
    path.write_text(render_html(blocks, title))
    return path


def write_run_outputs(out_dir: Path, result: dict, rows: dict[str, list[dict]], base_rows: dict[str, list[dict]],
                      cfg: Any) -> Path:
    """metrics.json, generations.jsonl (every prompt, response and judgement), config.yaml and the reports."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.setdefault("created", _dt.datetime.now().isoformat(timespec="seconds"))
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    with open(out_dir / "generations.jsonl", "w") as fh:
        for group in (rows, base_rows):
            for suite_rows in group.values():
                for r in suite_rows:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    cfg.save(out_dir / "config.yaml")
    return render_run(out_dir)


def _load(d: Path) -> dict:
    from .runner import headline, load_run

    m = load_run(d)
    m["headline"] = headline(m["suites"], m["headline"].get("primary_harm_judge"))  # current rules, old runs too
    rows = []
    gp = d / "generations.jsonl"
    if gp.is_file():
        rows = [json.loads(line) for line in gp.read_text().splitlines() if line.strip()]
    return {"dir": str(d), "metrics": m, "rows": rows, "label": m["model"]["name"]}


def render_run(out_dir: str | Path) -> Path:
    """(Re)write report.md and report.html of one run from its files: instant, no model needed."""
    run = _load(Path(out_dir))
    plots = _plots([run])
    return _write(Path(out_dir), run_blocks(run["metrics"], plots), plots, f"safealign eval: {run['label']}")


def write_report(dirs: Sequence[str | Path], out: str | Path | None = None,
                 labels: Sequence[str] | None = None) -> Path:
    """Compare finished runs side by side; a single dir re-renders its own report. Returns report.html."""
    if not dirs:
        raise ValueError("write_report needs at least one run directory")
    if len(dirs) == 1 and out is None:
        return render_run(dirs[0])
    runs = [_load(Path(d)) for d in dirs]
    if labels:
        if len(labels) != len(runs):
            raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
        for r, lab in zip(runs, labels, strict=True):
            r["label"] = lab
    seen: dict[str, int] = {}
    for r in runs:  # two runs of the same model need distinct labels
        n = seen.get(r["label"], 0)
        seen[r["label"]] = n + 1
        if n:
            r["label"] = f"{r['label']} ({Path(r['dir']).name})"
    out_dir = Path(out) if out is not None else Path("safealign-report")
    plots = _plots(runs)
    return _write(out_dir, compare_blocks(runs, plots), plots, "safealign eval: comparison")
