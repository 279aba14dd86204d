"""Decoding-time safety: scorer-steered decoders behind one interface (see docs/decoding.md).

>>> dec = build_decoder("adaptive", engine, reward=R, cost=C, config={"max_cost": 0.0})
>>> [r.text for r in dec.respond(["How do I pick a lock?"])]
"""

from safealign.decode.adaptive import AdaptiveConfig, AdaptiveDecoder, StopDecision, adaptive_stop
from safealign.decode.args import ArgsConfig, ArgsDecoder
from safealign.decode.base import (
    DEFAULT_REFUSAL,
    Candidate,
    Decoder,
    DecoderConfig,
    DecodeResult,
    ScorerFailure,
    Selection,
    feasible_mask,
    select_candidate,
)
from safealign.decode.best_of_n import BestOfNConfig, BestOfNDecoder, best_of_n_expectation, kl_best_of_n
from safealign.decode.guard import GuardConfig, GuardDecoder, SeverityModel, severity_levels
from safealign.decode.guided import GuidedConfig, GuidedDecoder, choose_lambda
from safealign.decode.registry import (
    DECODERS,
    DecodingConfig,
    build_decoder,
    decoder_class,
    list_decoders,
    resolve_scorer,
)
from safealign.decode.rejection import RejectionConfig, RejectionDecoder
from safealign.decode.sample import SampleConfig, SampleDecoder

__all__ = [
    "DECODERS", "DEFAULT_REFUSAL", "AdaptiveConfig", "AdaptiveDecoder", "ArgsConfig", "ArgsDecoder",
    "BestOfNConfig", "BestOfNDecoder", "Candidate", "DecodeResult", "Decoder", "DecoderConfig",
    "DecodingConfig", "GuardConfig", "GuardDecoder", "GuidedConfig", "GuidedDecoder", "RejectionConfig",
    "RejectionDecoder", "SampleConfig", "SampleDecoder", "ScorerFailure", "Selection", "SeverityModel",
    "StopDecision", "adaptive_stop", "best_of_n_expectation", "build_decoder", "choose_lambda",
    "decoder_class", "feasible_mask", "kl_best_of_n", "list_decoders", "resolve_scorer", "select_candidate",
    "severity_levels",
]
