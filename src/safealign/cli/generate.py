"""``safealign generate``: respond to one prompt or a prompt file with any decoder.

``--decoder sample`` (the default) is the plain engine; the others steer generation with the reward and
cost scorers (``--decoder adaptive --max-cost 0``; see ``docs/decoding.md``). Each output line is a JSON
record with the text, its scores and what it cost (tokens sampled, scorer calls, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from safealign.config import ConfigError, add_config_arguments, config_from_args, option, section
from safealign.data.records import user_prompt
from safealign.decode.registry import DecodingConfig
from safealign.decode.sample import SampleDecoder
from safealign.generation import SamplingConfig, build_engine


@dataclass
class GenerateConfig(DecodingConfig):
    """Options of ``safealign generate``: the model, how it samples, and the decoder on top."""

    model: str = option("smollm2-135m-instruct", help="embedded model name, local HF directory or hub id")
    backend: str = option("hf", help="generation backend: hf (transformers) or vllm")
    dtype: str = option("auto", help="auto (bf16 where the hardware runs it fast), float32, bfloat16, float16")
    sampling: SamplingConfig = section(
        SamplingConfig, help="sampling options (decoders other than 'sample' set n themselves)")

    def validate(self) -> None:
        super().validate()
        if self.backend not in ("hf", "vllm"):
            raise ConfigError(f"backend must be 'hf' or 'vllm', got '{self.backend}'")


# Hyphenated spellings of the most used top-level options (the dotted underscore forms work too).
ALIASES = {"--max-cost": "max_cost", "--refusal-text": "refusal_text", "--reward-scorer": "reward_scorer",
           "--cost-scorer": "cost_scorer"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="respond to a prompt or a file of prompts (plain or guided decoding)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a user prompt (repeatable)")
    src.add_argument("--prompts", help="dataset name or prompt file (CSV/JSON/JSONL/parquet)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts of --prompts")
    p.add_argument("--out", type=Path, default=None, help="write JSONL here (default: print to stdout)")
    add_config_arguments(p, GenerateConfig)
    for flag, dest in ALIASES.items():
        p.add_argument(flag, dest=f"cfg::{dest}", default=argparse.SUPPRESS, metavar="VALUE",
                       help=f"same as --{dest}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(GenerateConfig, args)
    if args.prompt:
        prompts = [user_prompt(t) for t in args.prompt]
    else:
        from safealign.data.registry import load_dataset

        prompts = [r.messages for r in load_dataset(args.prompts, kind="prompts")][: args.limit]
    engine = build_engine(cfg.model, backend=cfg.backend, dtype=cfg.dtype)
    decoder = cfg.build(engine, cfg.sampling)
    if isinstance(decoder, SampleDecoder):  # the plain engine keeps its n-samples-per-prompt behaviour
        rows = decoder.respond_many(prompts, progress=True)
    else:
        rows = [[r] for r in decoder.respond(prompts, progress=True)]
    sink = open(args.out, "w") if args.out else sys.stdout
    try:
        for row in rows:
            for r in row:
                rec = {"prompt": r.prompt, "response": r.text, **r.to_dict(), "tokens": len(r.token_ids)}
                rec.pop("text")
                if "logprob" in r.meta:
                    rec["logprob"] = r.meta["logprob"]
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
    finally:
        if args.out:
            sink.close()
            cfg.save(Path(str(args.out) + ".config.yaml"))
    flat = [r for row in rows for r in row]
    tokens = sum(r.tokens_sampled for r in flat)
    seconds = sum(r.seconds for r in flat)
    refused = sum(r.refused for r in flat)
    print(f"{cfg.decoder}: {len(flat)} responses ({refused} refusals), {tokens} tokens sampled, "
          f"{sum(r.scorer_calls for r in flat)} scorer calls in {seconds:.1f} s", file=sys.stderr)
    return 0
