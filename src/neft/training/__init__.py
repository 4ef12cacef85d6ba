"""Training against the chip (docs/method.md, 'Negative Feedback Training', 'Other answers to device variation',
'Training recipe'). May import: :mod:`neft.common`, :mod:`neft.data`, :mod:`neft.models`, :mod:`neft.chip`,
:mod:`neft.store`, :mod:`neft.deployment`, :mod:`neft.evaluation`.

- :mod:`~neft.training.objectives`: the objectives (vanilla, noise-injection, OVF, IRS, rcg, lipschitz, correctnet,
  distill) and the negative feedback loss;
- :mod:`~neft.training.config`: :class:`TrainConfig` and its checks, a run's ``config.json`` (:func:`load_config`,
  :func:`read_config`, :func:`record`);
- :mod:`~neft.training.trainer`: :func:`train`, the epoch loop;
- :mod:`~neft.training.run`: the live state of one run and how it starts;
- :mod:`~neft.training.run_directory`: the run directory created, replaced or continued (:class:`RunExistsError`);
- :mod:`~neft.training.resume`: ``last.pt`` and the settings check of a resumed run;
- :mod:`~neft.training.selection`: the selection split, its accuracies and the best checkpoint;
- :mod:`~neft.training.log`: ``train_log.csv``, TensorBoard scalars and the line per epoch (:func:`epochs_trained`);
- :mod:`~neft.training.variants`: a method plus the settings that make it a variant, and its label.
"""

from neft.training.config import TrainConfig, load_config, read_config, record
from neft.training.log import epochs_trained
from neft.training.run_directory import RunExistsError
from neft.training.trainer import train

__all__ = ["TrainConfig", "train", "load_config", "read_config", "epochs_trained", "record", "RunExistsError"]
