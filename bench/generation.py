"""Generation throughput of the embedded SmolLM2 (tokens/s at batch 1, 8 and 32). A script, not a test.

    python bench/generation.py [--dtype float32 bfloat16] [--new-tokens 64] [--path lean transformers]

``--path`` compares the lean Llama decoder (generation/llama_decoder.py, the default on CPU) with
transformers' own forward in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

from safealign import hardware
from safealign.data.registry import load_dataset
from safealign.generation import HFEngine, SamplingConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"] if hardware.cpu_has_fast_bf16() else ["float32"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--path", nargs="+", choices=["lean", "transformers"], default=["lean", "transformers"])
    args = ap.parse_args()
    print(hardware.describe())
    prompts = [r.messages for r in load_dataset("alpaca-eval")[:64]]
    for dtype, path in [(d, p) for d in args.dtype for p in args.path]:
        engine = HFEngine.from_pretrained(args.model, dtype=dtype)
        engine.fast = path == "lean"
        engine.generate(prompts[:2], SamplingConfig(max_new_tokens=4))  # warm-up
        for bs in args.batches:
            # fixed length (no early EOS effects): suppress EOS by sampling min length via large budget
            cfg = SamplingConfig(max_new_tokens=args.new_tokens, temperature=1.0, top_p=1.0, batch_size=bs)
            torch.manual_seed(0)
            t0 = time.perf_counter()
            engine.generate(prompts[:bs], cfg)
            dt = time.perf_counter() - t0
            st = engine.last_stats
            print(f"path={path:12s} dtype={dtype:9s} batch={bs:3d} new_tokens={st.new_tokens:5d} time={dt:6.1f}s "
                  f"throughput={st.new_tokens / dt:7.1f} tok/s")


if __name__ == "__main__":
    main()
