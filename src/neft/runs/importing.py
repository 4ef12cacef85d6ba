"""Weights trained elsewhere as a run directory: ``neft import --model pkg.mod:fn --weights file.pt --dataset NAME
--out RUN`` (docs/api.md, 'Your own network and data').

:func:`import_run` loads a plain PyTorch ``state_dict`` (``torch.save(model.state_dict(), "file.pt")``) into the
network the import path (or zoo name) builds, checks it on the data set, and writes ``config.json``,
``checkpoint.pt`` and ``summary.json`` as ``neft train`` does, so ``neft evaluate`` (write-verify included) and
``neft report`` work on it. A ``state_dict`` saved from a ``DataParallel``/``DistributedDataParallel`` wrapper has
every key prefixed ``module.``: the prefix is removed when every key carries it and the bare names fit the
network, and the run records that it was (``imported.stripped_prefix``). A dict that holds the state_dict under
``"state_dict"`` or ``"model"`` (a training checkpoint) is read from that key, also recorded; when it also names
the classes it was trained on (``classes``, torchvision's ``class_to_idx``, or a neft checkpoint's
``dataset_stats``), they are checked against the data set's (:func:`neft.data.check_classes`). Weights with NaN or
infinite values are refused, naming them.

The normalisation the weights were trained with is stated (``normalisation``, :mod:`neft.data.normalisation`: the
data set's own, none, or given per-channel means and stds), recorded in ``config.json`` (``recorded.dataset``: its
``mean``, ``std`` and ``normalisation``) and the checkpoint, so ``neft evaluate`` feeds the network the inputs it was
trained on: evaluated on other normalised inputs, a network gives wrong accuracies without any error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from neft import data, models
from neft.chip import devices
from neft.common.errors import SettingError, check_name
from neft.data import normalisation as normalisations
from neft.store import checkpoint
from neft.training.config import RECORDED, TrainConfig, record
from neft.training.run_directory import _prepare_out
from neft.training.selection import _accuracy

__all__ = ["import_run", "read_state_dict", "DDP_PREFIX"]

DDP_PREFIX = "module."


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None, list[str] | None]:
    """The tensors of a weights file, the key they were under (None for a bare state_dict) and the class names in
    label order the file carries beside them (:func:`_carried_classes`; None when it names none).

    Read with ``torch.load(weights_only=True)``: a file holding a whole pickled module is refused (it could run
    code); save ``model.state_dict()`` instead.

    Raises:
        FileNotFoundError: no such file.
        SettingError: (setting ``weights``) for a file that is no state_dict of tensors, or tensors holding NaN or
            infinite values (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise SettingError("weights", f"{str(path)!r} is not a plain state_dict (torch.load with weights_only=True "
                                      f"refused it: {type(error).__name__}); save model.state_dict() with torch.save"
                           ) from None
    for key in (None, "state_dict", "model"):
        candidate = loaded if key is None else loaded.get(key) if isinstance(loaded, dict) else None
        if isinstance(candidate, dict) and candidate and all(isinstance(v, torch.Tensor) for v in candidate.values()):
            _check_finite(candidate, path)
            return dict(candidate), key, _carried_classes(loaded) if key else None
    raise SettingError("weights", f"{str(path)!r} holds no state_dict of tensors (a {type(loaded).__name__}); save "
                                  "model.state_dict() with torch.save")


def _carried_classes(loaded: dict) -> list[str] | None:
    """The class names in label order that a training checkpoint records: ``classes`` (a list of names),
    ``class_to_idx`` (torchvision's ImageFolder: name -> label, labels 0 .. K - 1) or a neft checkpoint's
    ``dataset_stats["classes"]``; None when it records none of these in that form."""
    names, mapping, stats = loaded.get("classes"), loaded.get("class_to_idx"), loaded.get("dataset_stats")
    if names is None and isinstance(mapping, dict) and sorted(mapping.values()) == list(range(len(mapping))):
        names = sorted(mapping, key=mapping.get)
    if names is None and isinstance(stats, dict):
        names = stats.get("classes")
    return [str(name) for name in names] if isinstance(names, (list, tuple)) and names else None


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse a state_dict with NaN or infinite values, naming the tensors that hold them."""
    broken = [name for name, tensor in state.items()
              if (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor).all()]
    if broken:
        shown = ", ".join(broken[:5]) + (f" and {len(broken) - 5} more" if len(broken) > 5 else "")
        raise SettingError("weights", f"{str(path)!r} holds NaN or infinite values in {shown}: such a network gives "
                                      "no accuracy; the training that wrote it diverged or the file is damaged, "
                                      "import finite weights (e.g. an earlier checkpoint)")


def _strip_prefix(state: dict[str, torch.Tensor], expected: dict) -> tuple[dict[str, torch.Tensor], str | None]:
    """``state`` without the ``module.`` prefix of a DataParallel/DDP wrapper when every key has it and the network's
    own keys do not; else ``state`` unchanged."""
    if all(k.startswith(DDP_PREFIX) for k in state) and not all(k.startswith(DDP_PREFIX) for k in expected):
        return {k[len(DDP_PREFIX):]: v for k, v in state.items()}, DDP_PREFIX
    return state, None


def import_run(model: str, weights: str | Path, dataset: str, out: str | Path, *, model_args: dict | None = None,
               width: float = 1.0, image_size: int | None = None, data_dir: str | None = None, method: str = "vanilla",
               sigma: float = 0.0, device_model: str | dict = "RRAM1", normalisation: str | dict = "dataset",
               label: str | None = None, overwrite: bool = False) -> dict:
    """Turn a state_dict trained elsewhere into a run directory that ``neft evaluate`` and ``neft report`` read.

    Args:
        model: zoo name or import path of the network's factory (:mod:`neft.models.registry`).
        weights: file written by ``torch.save(model.state_dict(), path)`` (see the module docstring for the
            ``module.`` prefix and wrapped dicts).
        dataset: the data set the network classifies (built-in, ``folder:PATH`` or ``npz:PATH``).
        out: the run directory to create (must be new or empty unless ``overwrite``).
        model_args, width, image_size, data_dir: as in :class:`neft.training.config.TrainConfig`.
        method, sigma, device_model: how the network was trained, for the record (method ``vanilla``,
            sigma 0 by default); ``neft evaluate`` evaluates at 0 and ``sigma`` unless given ``--sigmas``.
        normalisation: the input normalisation the weights were trained with, which evaluation then uses:
            ``"dataset"`` (the data set's own mean/std, default), ``"none"`` (pixel values in [0, 1]) or
            ``{"mean": [...], "std": [...]}`` (one per channel, of pixel values in [0, 1];
            :func:`neft.data.normalisation.stated`). A wrong one gives wrong accuracies without any error.
        label: the name reports give the network (default ``imported <weights file stem>``).
        overwrite: replace an existing run directory (only one with a ``config.json``).

    Returns:
        ``{"test_accuracy_clean": percent, "stripped_prefix": "module." or None, "state_dict_key": ...,
        "imported": the weights file, "normalisation": {"source": "dataset" | "none" | "given", "mean": [...],
        "std": [...]}}``.

    Raises:
        SettingError: (a ``ValueError``) for a bad setting (an ``out`` or ``label`` with a line break or other
            control character included), a model that does not build or does not return
            ``[B, num_classes]``, weights that do not fit it (missing, unexpected or mis-shaped keys) or hold NaN or
            infinite values, weights that name other classes than the data set has (:func:`neft.data.check_classes`),
            or a normalisation that is not one of the three above.
        FileNotFoundError: no weights file or data set. RunExistsError: ``out`` holds a run.
    """
    config = TrainConfig(model=model, model_args=model_args, width=width, dataset=dataset, data_dir=data_dir,
                         image_size=image_size, method=method, sigma=sigma, device_model=device_model,
                         init="torch", epochs=1, select_on="test", validation=0.0).check()
    check_name("out", str(out), "the run directory")
    if label is not None:
        check_name("label", label, "the name reports give the network")
    state, key, classes = read_state_dict(weights)
    loaded, source = normalisations.stated(data.load(config.dataset, config.data_dir, image_size=config.image_size),
                                           normalisation)
    data.check_classes(loaded, {"classes": classes}, f"weights file {str(weights)!r}")
    network, stripped = _load_network(config, loaded, state, weights)
    out = Path(out)
    _prepare_out(out, resume=False, overwrite=overwrite, resumable=False)
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    imported = {"weights": str(Path(weights).resolve()), "sha256": digest, "state_dict_key": key,
                "stripped_prefix": stripped}
    _write_run(out, config, loaded, network, imported, label or f"imported {Path(weights).stem}", source)
    summary = {"test_accuracy_clean": _accuracy(network, loaded, "test", "cpu"), "stripped_prefix": stripped,
               "state_dict_key": key, "imported": imported["weights"],
               "normalisation": {"source": source, "mean": list(loaded.mean), "std": list(loaded.std)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _load_network(config: TrainConfig, loaded: data.ImageDataset, state: dict[str, torch.Tensor],
                  weights: str | Path) -> tuple[torch.nn.Module, str | None]:
    """The network ``config`` builds for ``loaded`` with the weights ``state`` in it (a DataParallel/DDP prefix
    removed, :func:`_strip_prefix`), checked to return ``[B, num_classes]``; and the prefix removed, or None.

    Raises:
        SettingError: weights that do not fit the network (missing, unexpected or mis-shaped keys), or a network
            whose output has the wrong shape.
    """
    network = models.create(config.model, loaded.num_classes, loaded.in_channels, config.width, "torch",
                            config.model_args)
    state, stripped = _strip_prefix(state, network.state_dict())
    mismatch = checkpoint.state_dict_mismatch(network.state_dict(), state)
    if mismatch:
        raise SettingError("weights", f"{str(weights)!r} does not fit {config.model}: {mismatch}")
    network.load_state_dict(state, strict=True)
    sample = loaded.preprocess(loaded.splits["train"][0][:2])
    models.registry.check_output(network, sample, loaded.num_classes, repr(config.model),
                                 data.own.resize_hint(loaded.name, sample.shape[-1]))
    return network, stripped


def _write_run(out: Path, config: TrainConfig, loaded: data.ImageDataset, network: torch.nn.Module, imported: dict,
               label: str, normalisation: str) -> None:
    """Write ``config.json`` and ``checkpoint.pt`` into ``out`` as ``neft train`` does, recording where the weights
    came from (``imported``), the stated normalisation (``loaded``'s mean and std, and ``normalisation``, its
    source), no training epochs, and its init and training seed as unknown (None)."""
    recorded = record(config, loaded)
    recorded["dataset"]["normalisation"] = normalisation
    settings = {**dataclasses.asdict(config), "epochs": None, "init": None, "seed": None}  # trained elsewhere: unknown
    (out / "config.json").write_text(json.dumps({**settings, RECORDED: {**recorded, "imported": imported}},
                                                indent=2))
    checkpoint.save(out / "checkpoint.pt", network, {
        "model": {"name": config.model, "num_classes": loaded.num_classes, "in_channels": loaded.in_channels,
                  "width": config.width, "args": config.model_args, "source": recorded["model_source"]},
        "dataset": loaded.name, "dataset_stats": recorded["dataset"], "method": config.method,
        "sigma": config.sigma, "sigma_block": None, "beta": config.beta, "temperature": config.temperature,
        "device_model": devices.get(config.device_model).to_dict(), "seed": None, "config": settings,
        "epoch": None, "val_accuracy": None, "selected_on": None, "imported": imported, "label": label,
    })
