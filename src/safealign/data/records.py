"""Typed records shared by every part of the toolkit.

A chat prompt is a list of ``{"role", "content"}`` messages so multi-turn HH-RLHF dialogues keep their
context; single-turn prompts are a one-message list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
Message = dict[str, str]  # {"role": Role, "content": str}
Severity = Literal["minor", "moderate", "severe"]
SEVERITY_LEVELS: tuple[str, ...] = ("minor", "moderate", "severe")


def user_prompt(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def conversation_chars(messages: list[Message]) -> int:
    """Characters of every turn: what a rollout re-reads, where ``prompt_text`` is only the last user turn."""
    return sum(len(m["content"]) for m in messages)


def prompt_text(messages: list[Message]) -> str:
    """The last user turn: the key used for splitting and caching."""
    for m in reversed(messages):
        if m["role"] == "user":
            return m["content"]
    return messages[-1]["content"] if messages else ""


@dataclass
class PromptRecord:
    """A prompt with its expected behaviour (``label``: e.g. ``harmful``/``unsafe`` should be refused)."""

    messages: list[Message]
    label: str | None = None
    category: str | None = None
    id: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return prompt_text(self.messages)


@dataclass
class PreferencePair:
    """One prompt, a preferred response and a dispreferred one (TRL / HH-RLHF semantics)."""

    messages: list[Message]
    chosen: str
    rejected: str
    chosen_safe: bool | None = None  # per-response safety labels where known (PKU-SafeRLHF)
    rejected_safe: bool | None = None
    source: str | None = None

    @property
    def prompt(self) -> str:
        return prompt_text(self.messages)


@dataclass
class SafetyPair:
    """PKU-SafeRLHF schema: two responses with helpfulness and safety preferences and per-response labels."""

    prompt: str
    response_0: str
    response_1: str
    better_response_id: int | None
    safer_response_id: int | None
    is_response_0_safe: bool | None
    is_response_1_safe: bool | None
    severity_level_0: int | None = None
    severity_level_1: int | None = None

    def helpful_pair(self) -> PreferencePair | None:
        if self.better_response_id is None:
            return None
        b = self.better_response_id
        r = (self.response_0, self.response_1)
        s = (self.is_response_0_safe, self.is_response_1_safe)
        return PreferencePair(user_prompt(self.prompt), r[b], r[1 - b], s[b], s[1 - b], "pku-helpful")

    def safety_pair(self) -> PreferencePair | None:
        if self.safer_response_id is None:
            return None
        b = self.safer_response_id
        r = (self.response_0, self.response_1)
        s = (self.is_response_0_safe, self.is_response_1_safe)
        return PreferencePair(user_prompt(self.prompt), r[b], r[1 - b], s[b], s[1 - b], "pku-safety")

