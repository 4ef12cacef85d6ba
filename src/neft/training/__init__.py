"""Training against the chip (docs/method.md, 'Negative Feedback Training', 'Other answers to device variation',
'Training recipe'). May import: :mod:`neft.common`, :mod:`neft.data`, :mod:`neft.models`, :mod:`neft.chip`,
:mod:`neft.store`, :mod:`neft.deployment`, :mod:`neft.evaluation`.

- :mod:`~neft.training.objectives`: the objectives (vanilla, noise-injection, OVF, IRS, rcg, lipschitz, correctnet,
  distill) and the negative feedback loss;
- :mod:`~neft.training.trainer`: :class:`TrainConfig` and :func:`train`, the run directory it writes;
- :mod:`~neft.training.variants`: a method plus the settings that make it a variant, and its label.
"""

from neft.training.trainer import TrainConfig, train

__all__ = ["TrainConfig", "train"]
