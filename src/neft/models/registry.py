"""Your own network by import path: ``package.module:function`` or ``path/to/nets.py:function``
(docs/api.md, 'Your own network and data').

The form is the one uvicorn, setuptools entry points and Hydra's ``_target_`` use. The function (a factory, or a
class) is called with ``num_classes`` and ``in_channels`` keywords, ``width`` when its signature has a ``width``
parameter, and the keyword arguments of ``model_args`` (``--model-args '{"depth": 4}'``, a preset's
``[train.model_args]``). It must return an ``nn.Module`` mapping ``[B, in_channels, H, W]`` to logits
``[B, num_classes]`` (:func:`check_output`). A run records the path, the arguments and the SHA-256 of the source
file (:func:`describe`), so ``neft evaluate``, ``neft report``, ``neft reproduce`` and ``--resume`` rebuild the
same network and say when the file changed since training. The current directory is searched for packages, as
uvicorn does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from neft.common.errors import SettingError

__all__ = ["is_import_path", "is_python_object", "python_object_name", "resolve", "source_file", "describe",
           "build", "check_output", "normalized", "short_name", "RESERVED"]

RESERVED = ("num_classes", "in_channels", "width")  # keywords neft passes itself
# the model name recorded for a module handed to neft.training.trainer.train(config, model=...)
PYTHON_OBJECT = "python:"

_FILE_MODULES: dict[tuple[str, str], object] = {}  # (resolved file, sha256) -> module, so a changed file reloads


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path ``module:function`` (or ``file.py:function``) rather than a zoo name."""
    return ":" in str(name) and not is_python_object(name)


def is_python_object(name: str) -> bool:
    """Whether ``name`` is the label of a module passed in Python (``python:package.module.Class``)."""
    return str(name).startswith(PYTHON_OBJECT)


def python_object_name(model: nn.Module) -> str:
    """The label a run records for a module built in the caller's code, e.g. ``python:__main__.Net``."""
    return f"{PYTHON_OBJECT}{type(model).__module__}.{type(model).__qualname__}"


def _split(spec: str) -> tuple[str, str]:
    where, _, attribute = str(spec).rpartition(":")
    if not where or not attribute:
        raise SettingError("model", f"model {spec!r} is not an import path; write package.module:function or "
                                    "path/to/nets.py:function")
    return where, attribute


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def source_file(spec: str) -> Path:
    """The Python file that defines the factory of ``spec`` (for a module path: the module's ``__file__``).

    Raises:
        SettingError: (setting ``model``) for a missing file or a module that cannot be imported.
    """
    where, _ = _split(spec)
    if _is_file(where):
        path = Path(where).expanduser()
        if not path.is_file():
            raise SettingError("model", f"model file {where!r} of {spec!r} does not exist; give an existing "
                                        "path/to/nets.py:function")
        return path.resolve()
    module = _import(spec)
    file = getattr(module, "__file__", None)
    if not file:
        raise SettingError("model", f"module {where!r} of {spec!r} has no source file to record; define the "
                                    "factory in a .py file")
    return Path(file).resolve()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import(spec: str):
    """The module named by ``spec`` (imported from a file, or by name with the current directory searched)."""
    where, _ = _split(spec)
    try:
        if _is_file(where):
            path = source_file(spec)
            key = (str(path), _sha256(path))
            if key not in _FILE_MODULES:
                name = f"neft_user_{path.stem}_{key[1][:12]}"
                loader = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader)
                sys.modules[name] = module
                try:
                    loader.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
                _FILE_MODULES[key] = module
            return _FILE_MODULES[key]
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        return importlib.import_module(where)
    except SettingError:
        raise
    except ModuleNotFoundError as error:
        raise SettingError("model", f"cannot import {where!r} for model {spec!r} ({error}); put its folder on "
                                    "PYTHONPATH, run from that folder, or give a file: path/to/nets.py:function"
                           ) from None
    except Exception as error:  # noqa: BLE001 - the user's module failed while importing
        raise SettingError("model", f"importing {where!r} for model {spec!r} raised {type(error).__name__}: "
                                    f"{_first_line(error)}; fix the module") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]


def resolve(spec: str) -> Callable[..., nn.Module]:
    """The factory (function or class) that ``spec`` names; ``module:Outer.attribute`` reaches nested names.

    Raises:
        SettingError: (setting ``model``) when the module or file cannot be imported, or has no such callable.
    """
    module = _import(spec)
    _, attribute = _split(spec)
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise SettingError("model", f"{_split(spec)[0]!r} defines no {attribute!r} (model {spec!r}); it defines "
                                        f"{', '.join(defined[:10]) or 'no public callable'}")
        target = getattr(target, part)
    if not callable(target):
        raise SettingError("model", f"{spec!r} is a {type(target).__name__}, not a function or class that builds "
                                    "the model")
    return target


def describe(spec: str) -> dict:
    """What a run records about an import-path model: ``{"path": spec, "file": absolute source file,
    "sha256": digest of that file}``.

    Raises:
        SettingError: as :func:`source_file`.
    """
    file = source_file(spec)
    return {"path": str(spec), "file": str(file), "sha256": _sha256(file)}


def normalized(spec: str) -> str:
    """``spec`` with a file path made absolute, so a run rebuilds its model from any working directory."""
    where, attribute = _split(spec)
    return f"{source_file(spec)}:{attribute}" if _is_file(where) else str(spec)


def short_name(name: str) -> str:
    """A name fit for a run directory: the zoo name, or the factory's name for an import path."""
    if is_import_path(name) or is_python_object(name):
        return str(name).rpartition(":")[2].rpartition(".")[2] or "model"
    return str(name)


def build(spec: str, num_classes: int, in_channels: int, width: float = 1.0,
          model_args: dict | None = None) -> nn.Module:
    """Call the factory of ``spec`` with ``num_classes``, ``in_channels`` (and ``width`` if it takes one) and
    ``model_args``; returns the module it builds.

    Raises:
        SettingError: (setting ``model``, ``model_args`` or ``width``) for an import failure, arguments the factory
            does not accept (the message shows its signature), ``width`` other than 1 for a factory without a
            ``width`` parameter, a factory that raises (its error's first line) or returns no ``nn.Module``.
    """
    factory = resolve(spec)
    model_args = dict(model_args or {})
    taken = [key for key in RESERVED if key in model_args]
    if taken:
        raise SettingError("model_args", f"model_args must not set {', '.join(taken)}: neft passes them itself "
                                         "(from the data set and --width)")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels, **model_args}
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: call it as is
        signature = None
    if signature is not None and "width" in signature.parameters:
        kwargs["width"] = width
    elif width != 1:
        raise SettingError("width", f"{spec!r} takes no width argument, so width must stay 1 (got {width}); add a "
                                    "width parameter to the factory or drop --width")
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as error:
            raise SettingError("model_args" if model_args else "model",
                               f"{spec!r} cannot be called with {', '.join(kwargs)} ({error}); its signature is "
                               f"{signature}: it must accept num_classes and in_channels keywords") from None
    try:
        model = factory(**kwargs)
    except Exception as error:  # noqa: BLE001 - the user's factory failed: one clear line
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise SettingError("model", f"{spec!r} raised {type(error).__name__} when called with {shown}: "
                                    f"{_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise SettingError("model", f"{spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_output(model: nn.Module, sample: torch.Tensor, num_classes: int, name: str = "the model",
                 hint: str = "") -> None:
    """Check that ``model`` maps a batch ``sample`` ``[B, C, H, W]`` (B >= 2) to logits ``[B, num_classes]``.

    Runs one clean forward in eval mode without gradients (train/eval flags restored). ``hint`` (e.g.
    :func:`neft.data.own.resize_hint`) ends the error message.

    Raises:
        SettingError: (setting ``model``) when the forward fails or its output has another shape.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(sample)
    except Exception as error:  # noqa: BLE001 - the user's forward failed on this data
        raise SettingError("model", f"{name} fails on a batch {list(sample.shape)} of this data set: "
                                    f"{type(error).__name__}: {_first_line(error)}{hint}") from None
    finally:
        model.train(was_training)
    shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if shape != [len(sample), num_classes]:
        raise SettingError("model", f"{name} returns {shape} for a batch {list(sample.shape)}; it must return "
                                    f"logits [B, num_classes] = {[len(sample), num_classes]}{hint}")
