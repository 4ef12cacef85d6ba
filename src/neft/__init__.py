"""neft: Negative Feedback Training (OVF, IRS) for robust NVCiM DNN accelerators, and Monte Carlo evaluation.

Qin et al., "Negative Feedback Training: A Novel Concept to Improve Robustness of NVCIM DNN Accelerators",
arXiv 2305.14561 / IEEE TCAD 2025.
"""

__version__ = "0.1.0"

from . import devices, models  # noqa: E402
from .checkpoint import load, load_checkpoint  # noqa: E402
from .devices import DeviceModel  # noqa: E402
from .seeds import run_seed  # noqa: E402
from .variation import Crossbar, make_generator, mapped_weight_names  # noqa: E402

__all__ = ["devices", "models", "DeviceModel", "Crossbar", "make_generator", "mapped_weight_names", "run_seed",
           "load", "load_checkpoint"]
