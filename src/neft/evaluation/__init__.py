"""The Monte Carlo engine and its metrics (docs/method.md, 'Monte Carlo evaluation and metrics'; docs/results.md).
May import: :mod:`neft.common`, :mod:`neft.models`, :mod:`neft.chip`, :mod:`neft.deployment`.

- :mod:`~neft.evaluation.config`: :class:`EvalConfig`, every setting of an evaluation, and :func:`parse_sigmas`;
- :mod:`~neft.evaluation.montecarlo`: :func:`evaluate`, R programmed chips per sigma;
- :mod:`~neft.evaluation.chip_forward`: how one test batch runs through K chips (layout, compile, vmap);
- :mod:`~neft.evaluation.metrics`: accuracy statistics, EKL, confidence, convergence probability;
- :mod:`~neft.evaluation.precision`: the bf16 check of ``precision="auto"``;
- :mod:`~neft.evaluation.non_finite`: the cause of NaN or infinite logits, named in the error.
"""

from neft.evaluation.config import EvalConfig, parse_sigmas
from neft.evaluation.montecarlo import evaluate

__all__ = ["EvalConfig", "evaluate", "parse_sigmas"]
