"""Model zoo: plain ``nn.Module`` architectures from the paper, built by name (docs/method.md, 'Models').

Every model is an ordinary network with no noise code inside; :class:`neft.chip.crossbar.Crossbar` perturbs it.
Each class declares ``irs_taps``: its default IRS snapshot points as ``(module name, pool size)`` pairs
(docs/method.md, 'IRS', taps table). Wherever a zoo name is accepted, so is an import path of your own factory,
``package.module:function`` or ``path/to/nets.py:function`` (:mod:`neft.models.registry`).

May import: :mod:`neft.common`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from neft.common.errors import SettingError
from neft.models import registry
from neft.models.lenet import LeNet5
from neft.models.resnet import ResNet18
from neft.models.vgg import VGG8

__all__ = ["MODELS", "INITS", "create", "registry", "default_taps", "default_init", "initialise", "init_weights",
           "VGG8", "ResNet18", "LeNet5"]

MODELS: dict[str, Callable[..., nn.Module]] = {"vgg8": VGG8, "resnet18": ResNet18, "lenet5": LeNet5}
# "torch" and "own" leave the network as its constructor built it: for the zoo that is PyTorch's default layer init
INITS = ("kaiming", "kaiming-uniform", "torch", "own")


def default_init(name: str) -> str:
    """The init a network gets when none is given (docs/method.md, 'Models'): ``"kaiming"``, the release's, for
    the zoo; ``"own"`` (not re-initialised: the network keeps the initialisation its own code gave it) for your own
    network, an import path or a module handed to :func:`neft.training.trainer.train` in Python."""
    return "own" if registry.is_import_path(name) or registry.is_python_object(name) else "kaiming"


def initialise(model: nn.Module, init: str) -> nn.Module:
    """Apply ``init`` (one of :data:`INITS`) to ``model`` in place and return it: ``"kaiming"`` and
    ``"kaiming-uniform"`` re-draw every conv/linear weight (:func:`init_weights`); ``"torch"`` and ``"own"`` leave
    the network as built (PyTorch's default layer init for the zoo, your code's own init for your network).

    Raises:
        ValueError: for an unknown init.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init in ("torch", "own"):
        return model
    return init_weights(model, "uniform" if init == "kaiming-uniform" else "normal")


def init_weights(model: nn.Module, distribution: str = "normal") -> nn.Module:
    """Kaiming (fan_out, ReLU gain) conv/linear weights and zero biases, in place: ``distribution="normal"`` is the
    release's init [release] (docs/method.md, 'Models'); ``"uniform"`` draws the same std from a uniform
    distribution [ours].

    The two differ in what matters under relative device variation: the noise std of a layer is proportional to
    its max|W| (see :mod:`neft.chip.variation`), and a normal layer's max|W| is ~4-5 std (it grows with the layer size),
    a uniform one's sqrt(3) std. At sigma 0.35 the normal init starts with weight noise 0.7-1.5x the weight std,
    the uniform one with 0.47x (measured on LeNet-5 and VGG8; ``neft layers --sigma`` prints it).
    """
    initialise = {"normal": nn.init.kaiming_normal_, "uniform": nn.init.kaiming_uniform_}[distribution]
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            initialise(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def create(name: str, num_classes: int, in_channels: int, width: float = 1.0, init: str | None = None,
           model_args: dict | None = None) -> nn.Module:
    """Build a model of the zoo by name, or your own by import path.

    Args:
        name: ``vgg8``, ``resnet18`` or ``lenet5`` (case-insensitive), or an import path
            ``package.module:function`` / ``path/to/nets.py:function`` (:func:`neft.models.registry.build`).
        num_classes: number of output logits.
        in_channels: image channels (1 for MNIST, 3 for CIFAR).
        width: channel multiplier (1.0 = the paper's network); every layer keeps at least one channel.
        init: ``"kaiming"`` (the release's Kaiming-normal fan_out), ``"kaiming-uniform"`` (the same std,
            uniform: max|W| is sqrt(3) std instead of ~4-5 std, see :func:`init_weights`), ``"torch"`` (PyTorch's
            default, also uniform) or ``"own"`` (not re-initialised: the factory's own init; for the zoo the same
            as ``"torch"``); None (default) takes :func:`default_init`: ``"kaiming"`` for the zoo, ``"own"`` for
            an import path.
        model_args: keyword arguments for an import-path factory (none for the zoo).

    Returns:
        The model; ``model(x)`` maps ``[B, in_channels, H, W]`` to logits ``[B, num_classes]``.

    Raises:
        ValueError: for an unknown name or init, or non-positive sizes; a
            :class:`~neft.common.errors.SettingError` for an import path that fails
            (:func:`~neft.models.registry.build`) or ``model_args`` given to a zoo model.
    """
    key = str(name).lower()
    if registry.is_python_object(name):
        raise SettingError("model", f"this run's model ({name}) was built in Python and handed to "
                                    "neft.training.trainer.train"
                                    "(config, model=...); pass the same module again (model=...), or train with "
                                    "an import path (--model package.module:function) to rebuild it anywhere")
    if key not in MODELS and not registry.is_import_path(name):
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}, or an import path "
                         "package.module:function or path/to/nets.py:function")
    if model_args and key in MODELS:
        raise SettingError("model_args", f"model_args apply to import-path models, not to the zoo's {key}")
    init = default_init(name) if init is None else init
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if not (width > 0 and num_classes >= 2 and in_channels >= 1):
        raise ValueError(
            f"need width > 0, num_classes >= 2 and in_channels >= 1, got {width}, {num_classes}, {in_channels}"
        )
    if key in MODELS:
        model = MODELS[key](num_classes=num_classes, in_channels=in_channels, width=width)
    else:
        model = registry.build(name, num_classes, in_channels, width, model_args)
    return initialise(model, init)


def default_taps(model: nn.Module) -> tuple[tuple[str, int], ...]:
    """The model's declared IRS snapshot points ``((module name, pool size), ...)``, or ``()`` if none."""
    return tuple(getattr(model, "irs_taps", ()))
