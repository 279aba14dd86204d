"""Decoder names -> classes and configs, scorer resolution, and the config section the CLIs share.

``safealign generate`` and ``safealign eval`` both take :class:`DecodingConfig` (``--decoder NAME``,
``--max_cost``, ``--reward_scorer``, ``--cost_scorer`` and one section of options per decoder, e.g.
``--adaptive.price 0.2``), then call :meth:`DecodingConfig.build` and ``decoder.respond(prompts)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safealign.config import ConfigBase, ConfigError, option, section
from safealign.decode.adaptive import AdaptiveConfig, AdaptiveDecoder
from safealign.decode.args import ArgsConfig, ArgsDecoder
from safealign.decode.base import Decoder, DecoderConfig
from safealign.decode.best_of_n import BestOfNConfig, BestOfNDecoder
from safealign.decode.guard import GuardConfig, GuardDecoder
from safealign.decode.guided import GuidedConfig, GuidedDecoder
from safealign.decode.rejection import RejectionConfig, RejectionDecoder
from safealign.decode.sample import SampleConfig, SampleDecoder
from safealign.generation.engine import Engine, SamplingConfig
from safealign.scoring.base import Scorer

DECODERS: dict[str, type[Decoder]] = {cls.name: cls for cls in (
    SampleDecoder, BestOfNDecoder, RejectionDecoder, GuidedDecoder, ArgsDecoder, AdaptiveDecoder, GuardDecoder)}
ALIASES = {"bon": "best_of_n", "best-of-n": "best_of_n", "plain": "sample", "segment": "guided"}


def decoder_class(name: str) -> type[Decoder]:
    """The class registered under ``name`` (or an alias); unknown names get a suggestion."""
    key = ALIASES.get(name, name)
    if key not in DECODERS:
        close = difflib.get_close_matches(name, [*DECODERS, *ALIASES], n=1, cutoff=0.5)
        hint = f" Did you mean '{ALIASES.get(close[0], close[0])}'?" if close else ""
        raise ConfigError(f"unknown decoder '{name}'.{hint} Known decoders: {', '.join(DECODERS)}")
    return DECODERS[key]


def list_decoders() -> list[tuple[str, str]]:
    """(name, one-line description) of every decoder."""
    return [(n, (c.__doc__ or "").strip().splitlines()[0]) for n, c in DECODERS.items()]


def resolve_scorer(ref: str | Scorer | None, kind: str) -> Scorer | None:
    """A scorer from a spec: ``none`` -> no scorer; ``default`` -> ``safealign.scoring.default_scorer(kind)``;
    ``py:module:attr`` -> a Scorer object or zero-argument factory; anything else -> ``load_scorer(path)``."""
    if ref is None or isinstance(ref, Scorer):
        return ref
    if ref.lower() in ("", "none", "off"):
        return None
    import safealign.scoring as scoring

    if ref.startswith("py:"):
        import importlib

        module, _, attr = ref[3:].partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"cannot load {kind} scorer '{ref}': {err}") from None
        scorer = obj if isinstance(obj, Scorer) else obj()
    elif ref == "default":
        fn = getattr(scoring, "default_scorer", None)
        if fn is None:
            raise ConfigError("no default scorers in this install (safealign.scoring.default_scorer is missing); "
                              f"pass --{kind}_scorer PATH")
        scorer = fn(kind)
    else:
        load = getattr(scoring, "load_scorer", None)
        if load is None:
            raise ConfigError("safealign.scoring.load_scorer is missing in this install; cannot load " + ref)
        scorer = load(ref)
    if not isinstance(scorer, Scorer) and not hasattr(scorer, "score"):
        raise ConfigError(f"{kind} scorer '{ref}' is a {type(scorer).__name__}, not a Scorer")
    got = getattr(scorer, "kind", kind)
    if got != kind:
        raise ConfigError(f"--{kind}_scorer {ref} is a {got} scorer, not a {kind} scorer")
    return scorer


def build_decoder(name: str, engine: Engine, *, reward: Scorer | None = None, cost: Scorer | None = None,
                  config: DecoderConfig | Mapping[str, Any] | None = None, sampling: SamplingConfig | None = None,
                  **kw: Any) -> Decoder:
    """Python entry point: ``build_decoder("adaptive", engine, reward=R, cost=C, config={"price": 0.2})``.

    ``kw`` goes to the class (e.g. ``severity=`` for the guard).
    """
    return decoder_class(name)(engine, reward, cost, config=config, sampling=sampling, **kw)


@dataclass
class DecodingConfig(ConfigBase):
    """Which decoder, its scorers, and the options of every decoder (only the chosen section is used)."""

    decoder: str = option("sample", help=f"decoding strategy: {', '.join(DECODERS)}")
    max_cost: float | None = option(None, help="cost budget d for the chosen decoder (overrides its section)")
    refusal_text: str | None = option(None, help="safe refusal for fail-closed paths (overrides the section)")
    reward_scorer: str | None = option(
        "default", help="reward scorer: default, a path for safealign.scoring.load_scorer, or none")
    cost_scorer: str | None = option("default", help="cost scorer: default, a path, or none")
    sample: SampleConfig = section(SampleConfig, help="options of decoder 'sample'")
    best_of_n: BestOfNConfig = section(BestOfNConfig, help="options of decoder 'best_of_n'")
    rejection: RejectionConfig = section(RejectionConfig, help="options of decoder 'rejection'")
    guided: GuidedConfig = section(GuidedConfig, help="options of decoder 'guided'")
    args: ArgsConfig = section(ArgsConfig, help="options of decoder 'args'")
    adaptive: AdaptiveConfig = section(AdaptiveConfig, help="options of decoder 'adaptive'")
    guard: GuardConfig = section(GuardConfig, help="options of decoder 'guard'")

    def validate(self) -> None:
        decoder_class(self.decoder)
        if self.refusal_text is not None and not self.refusal_text.strip():
            raise ConfigError("refusal_text must not be empty")

    def decoder_config(self) -> DecoderConfig:
        """The chosen decoder's section with the top-level overrides applied (validated again)."""
        name = decoder_class(self.decoder).name
        data = getattr(self, name).to_dict()
        if self.max_cost is not None:
            data["max_cost"] = self.max_cost
        if self.refusal_text is not None:
            data["refusal_text"] = self.refusal_text
        return decoder_class(name).config_class.from_dict(data, where=name)

    def build(self, engine: Engine, sampling: SamplingConfig | None = None, *, reward: Scorer | None = None,
              cost: Scorer | None = None, **kw: Any) -> Decoder:
        """Resolve the scorers (unless given) and build the decoder.

        The plain ``sample`` decoder loads scorers only when its ``score`` option asks for them.
        """
        cls = decoder_class(self.decoder)
        cfg = self.decoder_config()
        wants = bool(getattr(cfg, "score", False)) if cls is SampleDecoder else True
        if wants and reward is None:
            reward = resolve_scorer(self.reward_scorer, "reward")
        if wants and cost is None:
            cost = resolve_scorer(self.cost_scorer, "cost")
        return cls(engine, reward, cost, config=cfg, sampling=sampling, **kw)
