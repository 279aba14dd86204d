"""``safealign generate``: sample responses from any model for one prompt or a prompt file."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from safealign.config import ConfigBase, ConfigError, add_config_arguments, config_from_args, option, section
from safealign.data.records import user_prompt
from safealign.generation import SamplingConfig, build_engine


@dataclass
class GenerateConfig(ConfigBase):
    """Options of ``safealign generate``."""

    model: str = option("smollm2-135m-instruct", help="embedded model name, local HF directory or hub id")
    backend: str = option("hf", help="generation backend: hf (transformers) or vllm")
    dtype: str = option("auto", help="auto (bf16 where the hardware runs it fast), float32, bfloat16, float16")
    sampling: SamplingConfig = section(SamplingConfig, help="sampling options")

    def validate(self) -> None:
        if self.backend not in ("hf", "vllm"):
            raise ConfigError(f"backend must be 'hf' or 'vllm', got '{self.backend}'")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample responses for a prompt or a file of prompts")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a user prompt (repeatable)")
    src.add_argument("--prompts", help="dataset name or prompt file (CSV/JSON/JSONL/parquet)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts of --prompts")
    p.add_argument("--out", type=Path, default=None, help="write JSONL here (default: print to stdout)")
    add_config_arguments(p, GenerateConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(GenerateConfig, args)
    if args.prompt:
        prompts = [user_prompt(t) for t in args.prompt]
    else:
        from safealign.data.registry import load_dataset

        prompts = [r.messages for r in load_dataset(args.prompts, kind="prompts")][: args.limit]
    engine = build_engine(cfg.model, backend=cfg.backend, dtype=cfg.dtype)
    outs = engine.generate(prompts, cfg.sampling, progress=True)
    sink = open(args.out, "w") if args.out else sys.stdout
    try:
        for msgs, row in zip(prompts, outs, strict=True):
            for g in row:
                rec = {"prompt": msgs[-1]["content"], "response": g.text, "tokens": g.num_tokens,
                       "finish_reason": g.finish_reason, "logprob": sum(g.logprobs)}
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
    finally:
        if args.out:
            sink.close()
            cfg.save(Path(str(args.out) + ".config.yaml"))
    st = engine.last_stats
    print(f"{st.sequences} responses, {st.new_tokens} tokens in {st.seconds:.1f} s "
          f"({st.tokens_per_second:.1f} tok/s)", file=sys.stderr)
    return 0
