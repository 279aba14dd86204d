"""Plain sampling as a decoder (``sample``): the unguided baseline, optionally scored for reporting."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from safealign.config import option
from safealign.data.records import Message
from safealign.decode.base import (
    Candidate,
    Decoder,
    DecoderConfig,
    DecodeResult,
    Meter,
    Outcome,
    ScorerFailure,
    as_messages,
)
from safealign.generation.engine import Generation
from safealign.scoring.base import PromptLike


@dataclass
class SampleConfig(DecoderConfig):
    """Plain sampling: one draw per prompt (``sampling.n`` draws in :meth:`SampleDecoder.respond_many`)."""

    score: bool = option(False, help="score the sample with the given scorers for reporting (never filters it)")


class SampleDecoder(Decoder):
    """The policy as is: the unguided baseline; its text is never screened (scores are only reported).

    Prompts are batched together (the engine's ``batch_size``), so ``seconds`` is the batch time divided
    evenly among its samples.
    """

    name = "sample"
    config_class = SampleConfig
    needs = ()

    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        return self._outcome(messages, self.sample(messages, meter, 1)[0][0], meter)

    def _outcome(self, messages: list[Message], g: Generation, meter: Meter) -> Outcome:
        logprob = float(sum(g.logprobs))
        cand = Candidate(g.text, list(g.token_ids), g.finish_reason, meta={"logprob": logprob})
        meter.n_candidates += 1
        meter.rounds += 1
        if getattr(self.cfg, "score", False) and (self.reward is not None or self.cost is not None):
            self.score(messages, [cand], meter)
        return Outcome(cand, False, None, "unscreened sample", [cand], meta={"logprob": logprob})

    def respond(self, prompts: Sequence[PromptLike], progress: bool = False,
                seed: int | None = None) -> list[DecodeResult]:
        return [row[0] for row in self.respond_many(prompts, n=1, progress=progress, seed=seed)]

    def respond_many(self, prompts: Sequence[PromptLike], n: int | None = None, progress: bool = False,
                     seed: int | None = None) -> list[list[DecodeResult]]:
        """``n`` (default ``sampling.n``) independent samples per prompt, batched across prompts.

        Batched sampling draws depend on the batch (the engine's generator is shared), unlike the
        per-prompt decoders; the k-th call without ``seed`` uses ``sampling.seed + k``.
        """
        msgs = [as_messages(p) for p in prompts]
        n = n or self.sampling.n
        cfg = dataclasses.replace(self.sampling, n=n, seed=self._next_seed(seed))
        start = time.perf_counter()
        gens = self.engine.generate(msgs, cfg, progress=progress) if msgs else []
        share = (time.perf_counter() - start) / max(1, len(msgs) * n)
        out: list[list[DecodeResult]] = []
        for m, row in zip(msgs, gens, strict=True):
            results = []
            for g in row:
                meter = Meter(tokens_sampled=g.num_tokens)
                t0 = time.perf_counter()
                try:
                    o = self._outcome(m, g, meter)
                except ScorerFailure as err:
                    if self.cfg.on_scorer_error == "raise":
                        raise
                    o = Outcome(None, False, "scorer_error", f"scorer error: {err}")
                results.append(self._finish(m, o, meter, share + time.perf_counter() - t0))
            out.append(results)
        return out
