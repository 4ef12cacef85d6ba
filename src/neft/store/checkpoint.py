"""Inference checkpoints: the trained backbone's plain ``state_dict`` plus the settings that made it
(docs/results.md, 'Run directory').

``checkpoint.pt`` holds ``{"format", "model": {"name", "num_classes", "in_channels", "width", "args", "source"},
"state_dict",
"dataset", "method", "sigma", "sigma_block", "beta", "device_model", "seed", "epoch", "val_accuracy",
"versions"}``. IRS heads and optimiser state never enter it (they live in the resumable ``last.pt``). For a model given
by import path, ``args`` holds its keyword arguments and ``source`` its file and SHA-256 (:mod:`neft.models.registry`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neft import models
from neft.common.version import __version__

__all__ = ["FORMAT", "save", "write", "digest", "load", "load_checkpoint", "versions", "checkpoint_path",
           "state_dict_mismatch", "settings_changes", "WHERE_SETTINGS"]

FORMAT = "neft-checkpoint-1"
# settings that say where a run computes and reads, not what it computes: they may change on resume
WHERE_SETTINGS = frozenset({"device", "data_dir", "tensorboard"})


def versions() -> dict[str, str]:
    """Package versions recorded in checkpoints and results."""
    return {"neft": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "python": platform.python_version()}


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path/checkpoint.pt``.

    Raises:
        FileNotFoundError: if there is no such checkpoint (the message says how to make one).
    """
    path = Path(path)
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(file)!r}: train one with `neft train --out {path}` first")
    return file


def digest(path: str | Path) -> str:
    """SHA-256 (hex) of the checkpoint file of a run directory or file (:func:`checkpoint_path`): what pins a
    distillation teacher (docs/results.md, 'Run directory')."""
    sha = hashlib.sha256()
    with checkpoint_path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def save(path: str | Path, model: nn.Module, metadata: dict) -> None:
    """Write ``model``'s state_dict (moved to CPU) and ``metadata`` atomically (temporary file, then rename)."""
    path = Path(path)
    state = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    write({"format": FORMAT, **metadata, "versions": versions(), "state_dict": state}, path)


def write(data: dict, path: str | Path) -> None:
    """``torch.save`` ``data`` to ``path`` atomically: to ``path`` with the suffix ``.tmp``, then renamed.

    Raises:
        OSError: the file cannot be written (full disk, read-only folder); the message names it, and no
            temporary file is left behind.
    """
    path = Path(path)
    temporary = path.with_suffix(".tmp")
    try:
        torch.save(data, temporary)
        temporary.replace(path)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as a RuntimeError
        temporary.unlink(missing_ok=True)
        reason = error.strerror if isinstance(error, OSError) else str(error).strip().splitlines()[-1]
        raise OSError(f"cannot write {str(path)!r} ({reason}); free space or make the folder writable") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    model: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the trained backbone from a checkpoint alone.

    A model given by import path is rebuilt by calling its factory again with the recorded arguments; when its
    source file changed since training (another SHA-256) a ``UserWarning`` says so and ``metadata["model"]
    ["source_changed"]`` is True.

    Args:
        path: a run directory or a ``checkpoint.pt`` file.
        map_location: device for the loaded tensors and the returned model.
        model: load the weights into this module instead of rebuilding the architecture (needed for a run whose
            network was handed to :func:`neft.training.trainer.train` in Python).

    Returns:
        ``(model, metadata)``: the model in eval mode on ``map_location``; the checkpoint without its state_dict.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: the file is not a neft checkpoint, names an unknown model or an import path that fails, its
            weights do not fit the architecture (missing, unexpected or mis-shaped keys; never loaded with
            ``strict=False``), or the ``config.json`` beside a ``checkpoint.pt`` records other settings (the
            checkpoint is another run's; a missing ``config.json`` only warns).
    """
    file = checkpoint_path(path)
    try:
        data = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{str(file)!r} is not a readable neft checkpoint ({type(error).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{str(file)!r} is not a neft checkpoint (expected format {FORMAT!r}); "
                         "pass a run directory written by `neft train`")
    _check_run_config(file, data.get("config"))
    spec = data["model"]
    if model is None:
        model = models.create(spec["name"], spec["num_classes"], spec["in_channels"], spec["width"], init="torch",
                              model_args=spec.get("args"))
        spec["source_changed"] = _source_changed(spec)
    mismatch = state_dict_mismatch(model.state_dict(), data["state_dict"])
    if mismatch:
        raise ValueError(f"checkpoint {str(file)!r} does not fit {spec['name']} (width {spec['width']}): {mismatch}")
    model.load_state_dict(data["state_dict"], strict=True)
    metadata = {key: value for key, value in data.items() if key != "state_dict"}
    return model.to(map_location).eval(), metadata


def load(path: str | Path, map_location: str | torch.device = "cpu", model: nn.Module | None = None) -> nn.Module:
    """The trained backbone of a run directory or checkpoint file, in eval mode; see :func:`load_checkpoint`."""
    return load_checkpoint(path, map_location, model)[0]


def _source_changed(spec: dict) -> bool:
    """Whether the source file of an import-path model differs from the one recorded at training (warns if so)."""
    source = spec.get("source")
    if not source:
        return False
    now = models.registry.describe(spec["name"])["sha256"]
    if now == source["sha256"]:
        return False
    warnings.warn(f"the model source {source['file']} changed since this network was trained (sha256 "
                  f"{source['sha256'][:12]}... then, {now[:12]}... now): the architecture rebuilt from it may "
                  "compute something else than the trained one; restore the file to be sure", UserWarning,
                  stacklevel=3)
    return True


def _check_run_config(file: Path, embedded: dict | None) -> None:
    """Refuse a checkpoint whose run directory's ``config.json`` names other settings than the checkpoint holds
    (the checkpoint came from another run); warn when a run directory's checkpoint.pt has no config.json beside
    it, since the settings then come from the checkpoint alone."""
    if embedded is None or file.name != "checkpoint.pt":
        return
    config_file = file.parent / "config.json"
    if not config_file.is_file():
        warnings.warn(f"{str(file.parent)!r} has no config.json: the settings recorded in checkpoint.pt are used "
                      f"(model {embedded.get('model')!r}, dataset {embedded.get('dataset')!r}, method "
                      f"{embedded.get('method')!r})", UserWarning, stacklevel=4)
        return
    try:
        written = json.loads(config_file.read_text())
    except (OSError, ValueError):
        raise ValueError(f"{str(config_file)!r} is damaged (not JSON); restore it or remove it to use the settings "
                         "recorded in checkpoint.pt") from None
    values = settings_changes(written, embedded, "config.json", "checkpoint.pt")
    if values:
        raise ValueError(f"{str(file)!r} was not trained with the settings of the config.json beside it "
                         f"({values}): the checkpoint belongs to another run; put it back in its own run "
                         "directory, or evaluate the checkpoint file under another name (e.g. copied to net.pt)")


def settings_changes(first: dict, second: dict, first_in: str, second_in: str, shown: int = 4) -> str:
    """How two records of a run's settings (``TrainConfig`` dicts) differ, e.g. ``"seed: 1 in last.pt, 0 in this
    run"`` (the first ``shown`` differing keys, sorted); empty when they are the same run's. Keys only one of them
    holds (a file written before a setting existed), :data:`WHERE_SETTINGS`, a distillation teacher's path
    (pinned by its digest, wherever it lies now) and ``epochs`` (a run extended on resume keeps the files written
    under its first plan; resuming checks that epochs only grow) are not compared."""
    changed = sorted(key for key in first.keys() & second.keys() - WHERE_SETTINGS - {"teacher", "epochs"}
                     if first[key] != second[key])
    return "; ".join(f"{key}: {first[key]!r} in {first_in}, {second[key]!r} in {second_in}"
                     for key in changed[:shown])


def state_dict_mismatch(expected: dict, found: dict, shown: int = 3) -> str:
    """A short description of how ``found`` (a state_dict) differs from ``expected``; empty when it fits. A missing
    BatchNorm ``num_batches_tracked`` fits, as in ``load_state_dict`` (PyTorch fills it in; it sets no value)."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")

    missing = [k for k in expected if k not in found and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {list(found[k].shape)} instead of {list(expected[k].shape)}" for k in expected
              if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = [f"{len(missing)} missing ({names(missing)})" if missing else "",
             f"{len(unexpected)} unexpected ({names(unexpected)})" if unexpected else "",
             f"{len(shapes)} of another shape ({names(shapes)})" if shapes else ""]
    text = "; ".join(part for part in parts if part)
    if unexpected and all(k.startswith("module.") for k in unexpected) and \
            {k[len("module."):] for k in unexpected} >= set(missing):
        text += ("; the keys carry the 'module.' prefix of DataParallel/DistributedDataParallel: save "
                 "model.module.state_dict() instead")
    return text
