"""neft: Negative Feedback Training (OVF, IRS) for robust NVCiM DNN accelerators, and Monte Carlo evaluation.

Qin et al., "Negative Feedback Training: A Novel Concept to Improve Robustness of NVCIM DNN Accelerators",
arXiv 2305.14561 / IEEE TCAD 2025.
"""

from . import devices, models
from .devices import DeviceModel
from .variation import Crossbar, make_generator, mapped_weight_names, run_seed

__version__ = "0.1.0"

__all__ = ["devices", "models", "DeviceModel", "Crossbar", "make_generator", "mapped_weight_names", "run_seed"]
