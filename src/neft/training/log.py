"""The per-epoch log of a training run: ``train_log.csv`` (one row per epoch: learning rate, loss and its parts,
accuracies, seconds), the same numbers as TensorBoard scalars, and the line printed after each epoch.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from neft.common.errors import SettingError

__all__ = ["epochs_trained"]

LOG_FIELDS = ["epoch", "lr", "loss", "train_acc", "val_acc_clean", "val_acc_noisy", "best", "seconds"]


def _summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or a SettingError saying how to install the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SettingError("tensorboard", "tensorboard=True needs the tensorboard package: pip install tensorboard "
                                          "(or neft[tensorboard]); train_log.csv has the same numbers") from None
    return SummaryWriter


def epochs_trained(run_dir: str | Path) -> int | None:
    """How many epochs a run directory has trained: the last epoch of its ``train_log.csv`` (None without one).
    Fewer than its ``config.json`` ``epochs`` means training stopped early (``stop_after``, an interruption)."""
    path = Path(run_dir) / "train_log.csv"
    if not path.is_file():
        return None
    with path.open() as file:
        epochs = [int(row["epoch"]) for row in csv.DictReader(file) if (row.get("epoch") or "").isdigit()]
    return max(epochs, default=0)


def _truncate_log(path: Path, fields: list[str], epochs_done: int) -> None:
    """Start ``train_log.csv`` afresh, keeping only rows of epochs already done (for resume)."""
    rows = []
    if path.is_file() and epochs_done:
        with path.open() as file:
            rows = [row for row in csv.DictReader(file) if int(row["epoch"]) <= epochs_done]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _append_log(path: Path, fields: list[str], row: dict) -> None:
    with path.open("a", newline="") as file:
        csv.DictWriter(file, fieldnames=fields).writerow(row)


def log_fields(parts: tuple[str, ...], heads: int) -> list[str]:
    """The columns of ``train_log.csv``: :data:`LOG_FIELDS` with the objective's loss ``parts`` after ``loss`` and
    one ``head{i}_acc`` per IRS snapshot head (``heads`` of them) after the validation accuracies."""
    return LOG_FIELDS[:3] + list(parts) + LOG_FIELDS[3:5] + [f"head{i + 1}_acc" for i in range(heads)] + LOG_FIELDS[5:]


@dataclass
class EpochLog:
    """The main rank's per-epoch log of one run: ``train_log.csv`` and, with ``tensorboard``, every column but
    ``epoch`` as a TensorBoard scalar in ``out/tensorboard``."""

    path: Path
    fields: list[str]
    writer: object | None = None  # a TensorBoard SummaryWriter (config.tensorboard)

    @classmethod
    def open(cls, out: Path, fields: list[str], epochs_done: int, tensorboard: bool) -> EpochLog:
        """Start ``out/train_log.csv`` afresh with the rows of the ``epochs_done`` epochs already done (resume)."""
        _truncate_log(out / "train_log.csv", fields, epochs_done)
        writer = _summary_writer()(log_dir=str(out / "tensorboard")) if tensorboard else None
        return cls(out / "train_log.csv", fields, writer)

    def write(self, row: dict) -> None:
        """Append one epoch's row (its ``epoch`` is the TensorBoard step)."""
        _append_log(self.path, self.fields, row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def show_epoch(row: dict, config, loss_parts: tuple[str, ...], selection, log_name: str | None,
               bars: bool) -> None:
    """Print the line of one finished epoch: loss and its ``loss_parts``, training accuracy and the clean and noisy
    accuracies on the selection split (percent; ``clean (no circuit)`` for a run trained through the crossbar
    circuit, whose clean accuracy is the ideal layers'; the noisy one where the ``selection``
    (:class:`~neft.training.selection.Selection`) scores epochs on noisy chips), ``*best`` for a new best epoch;
    prefixed ``[log_name]`` when given, written above the progress bars when ``bars`` are drawn. ``config``: the
    run's :class:`~neft.training.config.TrainConfig`."""
    parts = "".join(f" {part} {row[part]:.4f}" for part in loss_parts)
    ideal = " (no circuit)" if config.chip().circuit.label() else ""  # the clean accuracy skips the run's circuit
    noisy = f"  noisy@{config.sigma:g} {row['val_acc_noisy']:.2f}%" if selection.noisy else ""
    line = (f"{f'[{log_name}] ' if log_name else ''}epoch {row['epoch']}/{config.epochs}: loss {row['loss']:.4f}"
            f"{f' ({parts.strip()})' if parts else ''}  train {row['train_acc']:.2f}%  {selection.split} "
            f"clean{ideal} {row['val_acc_clean']:.2f}%{noisy}"
            f"{'  *best' if row['best'] else ''}")
    if bars:
        tqdm.write(line)
    else:
        print(line, flush=True)

