"""The live state of one training run and how it starts: the data, the model, its objective, optimiser and
scheduler, the noise and data-order generators, the counters, the selection split and the crossbar circuit; the run
directory prepared and its ``config.json`` written once every setting was accepted.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from neft import data, models
from neft.chip.circuit import Circuit, calibration_sample
from neft.chip.crossbar import Crossbar, make_generator
from neft.common import distributed
from neft.common.compute import resolve_device
from neft.training import objectives
from neft.training.config import _OBJECTIVE_SETTINGS, RECORDED, TrainConfig, read_config, record
from neft.training.log import EpochLog, log_fields
from neft.training.run_directory import _prepare_out
from neft.training.selection import Selection, _validation_size


@dataclass
class Run:
    """The live state of one training run: data, model, objective, optimiser, counters and files."""

    config: TrainConfig
    out: Path
    device: torch.device
    dataset: data.ImageDataset
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped for data-parallel training when there are several ranks
    objective: objectives.Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    noise_generator: torch.Generator
    data_generator: torch.Generator
    state: dict
    fields: list[str]  # the columns of train_log.csv
    selection: Selection
    circuit: Circuit | None  # the crossbar circuit the objective trains with (None: off)
    calibration: torch.Tensor | None  # the training images that calibrate its converter ranges
    log: EpochLog | None = None  # train_log.csv and TensorBoard (main rank)


def start(config: TrainConfig, out: Path, resume: bool, overwrite: bool,
          given: torch.nn.Module | None = None) -> tuple[Run, bool]:
    """Load the data, build model, objective and optimiser, and prepare ``out``; returns the run (its counters at
    the start, no log yet) and whether it resumes from ``out/last.pt``."""
    device = distributed.setup(resolve_device(config.device))
    main = distributed.is_main()
    dataset = distributed.agree(lambda: data.load(
        config.dataset, config.data_dir, validation=_validation_size(config), seed=config.seed,
        train_subset=config.train_subset, test_subset=config.test_subset, image_size=config.image_size))
    torch.manual_seed(config.seed)
    model, sample = _model(config, dataset, device, given)
    noise_generator = make_generator(0, device)  # reseeded every step from (seed, rank, step)
    chip = config.chip()  # the device model and circuit that the objective and the circuit share
    objective = objectives.create(
        config.method, model, sample, dataset.num_classes, sigma=config.sigma, beta=config.beta,
        device_model=chip.device_model, generator=noise_generator, sigma_block=config.sigma_block,
        taps=config.taps, temperature=config.temperature, teacher=config.teacher,
        **{name: getattr(config, name) for name in _OBJECTIVE_SETTINGS},
    )
    calibration, drawn = (calibration_sample(dataset, config.seed, device) if chip.circuit.calibrated
                          else (None, None))  # converter ranges from a class-mixed sample, at every epoch
    recorded = record(config, dataset, drawn)
    # a network without a crossbar-mapped layer is refused here, before the run directory is touched
    crossbar = Crossbar(model, chip.device_model) if config.sigma > 0 or chip.circuit.active else None
    # the run directory is checked (and, to overwrite it, cleared) only once every setting was accepted
    resuming = distributed.agree(lambda: _prepare_out(out, resume, overwrite) if main
                                 else resume and (out / "last.pt").is_file())
    if resuming:  # with the classes it started with: a renamed class folder would give its labels other meanings
        data.check_classes(dataset, read_config(out).get(RECORDED, {}).get("dataset"), f"run {out}")
    if main:  # only once the objective accepted its settings: a bad tap leaves no half-made run behind
        (out / "config.json").write_text(json.dumps({**dataclasses.asdict(config), RECORDED: recorded}, indent=2))
    net = _distribute(model, objective, device)
    optimizer, scheduler = _optimizer(config, model, objective)
    selection = Selection.of(config, dataset, device, recorded)  # preprocessed once
    run = Run(
        config=config, out=out, device=device, dataset=dataset, model=model, net=net, objective=objective,
        optimizer=optimizer, scheduler=scheduler, noise_generator=noise_generator,
        data_generator=make_generator(config.seed + 2, "cpu"),
        state={"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "seconds": 0.0, "best_kind": selection.kind},
        fields=log_fields(objective.parts, len(objective.modules())),
        selection=selection,
        circuit=Circuit(crossbar, chip.circuit, noise_generator) if chip.circuit.active else None,
        calibration=calibration,
    )
    return run, resuming


def _model(config: TrainConfig, dataset: data.ImageDataset, device: torch.device,
           given: torch.nn.Module | None) -> tuple[torch.nn.Module, torch.Tensor]:
    """The network on ``device`` (``given``, or ``config.model`` built; ``config.init`` applied to either) and two
    preprocessed training images."""
    model = (models.initialise(given, config.init) if given is not None else models.create(
        config.model, dataset.num_classes, dataset.in_channels, config.width, config.init,
        config.model_args)).to(device)
    sample = dataset.preprocess(dataset.splits["train"][0][:2].to(device))
    # logits of the right shape before any file exists (a built-in model too: images of another size fail)
    models.registry.check_output(model, sample, dataset.num_classes, repr(config.model),
                                 data.own.resize_hint(dataset.name, sample.shape[-1]))
    return model, sample


def _distribute(model: torch.nn.Module, objective: objectives.Objective, device: torch.device) -> torch.nn.Module:
    """The model as the steps run it: wrapped in ``DistributedDataParallel`` (and the IRS heads with it) when there
    are several ranks, as is otherwise."""
    net = model
    if distributed.world_size() > 1:  # gradients of the backbone and IRS heads averaged over ranks
        def wrap(module):
            return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

        net = wrap(model)
        objective.distribute(wrap)
    return net


def _optimizer(config: TrainConfig, model: torch.nn.Module, objective: objectives.Objective
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam (or SGD with momentum 0.9) over the model's and the IRS heads' parameters at ``config.lr``, and cosine
    annealing over ``config.epochs`` (docs/method.md, 'Training recipe')."""
    params = list(model.parameters()) + list(objective.modules().parameters())
    optimizer = (torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam"
                 else torch.optim.SGD(params, lr=config.lr, momentum=0.9))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return optimizer, scheduler
