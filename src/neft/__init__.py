"""neft: Negative Feedback Training (OVF, IRS) for robust NVCiM DNN accelerators, and Monte Carlo evaluation.

Qin et al., "Negative Feedback Training: A Novel Concept to Improve Robustness of NVCIM DNN Accelerators",
arXiv 2305.14561 / IEEE TCAD 2025. The packages, their purposes and the order in which they may import each other:
docs/architecture.md. What README.md and docs/api.md use is listed in ``__all__``.
"""

from neft import data, models, reporting
from neft.chip import ChipSettings, Crossbar, DeviceModel, devices, make_generator, mapped_weight_names
from neft.chip.presets import PRESETS
from neft.common.seeds import run_seed
from neft.common.version import __version__
from neft.evaluation import EvalConfig, evaluate, metrics, parse_sigmas
from neft.reporting import write_report
from neft.runs.evaluate import evaluate_run
from neft.runs.importing import import_run
from neft.store.checkpoint import load, load_checkpoint
from neft.training import TrainConfig, load_config, objectives, train

__all__ = ["__version__", "data", "models", "devices", "metrics", "objectives", "reporting", "ChipSettings",
           "Crossbar", "DeviceModel", "PRESETS", "EvalConfig", "TrainConfig", "evaluate", "evaluate_run",
           "import_run", "load", "load_checkpoint", "load_config", "make_generator", "mapped_weight_names",
           "parse_sigmas", "run_seed", "train", "write_report"]
