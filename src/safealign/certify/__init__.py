"""HC-RLHF: a pessimistic training constraint and a high-confidence safety test that certifies or refuses.

``bounds``: Student-t / Hoeffding upper confidence bounds and ``safety_test``; ``handler``: the ``pessimistic``
constraint handler (importing this package registers it); ``certificate``: the candidate/safety split and the
certify flow that writes ``certificate.json`` or reports "No Solution Found". See ``docs/hc_rlhf.md``.
"""

from safealign.certify.bounds import (
    SafetyTestResult,
    hoeffding_ucb,
    pessimistic_coefficient,
    pessimistic_ucb,
    safety_test,
    student_t_ucb,
    t_quantile,
)
from safealign.certify.handler import PessimisticConfig, PessimisticHandler

__all__ = [
    "PessimisticConfig",
    "PessimisticHandler",
    "SafetyTestResult",
    "hoeffding_ucb",
    "pessimistic_coefficient",
    "pessimistic_ucb",
    "safety_test",
    "student_t_ucb",
    "t_quantile",
]
