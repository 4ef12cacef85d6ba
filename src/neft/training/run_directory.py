"""The run directory a training run writes: created new, replaced (``overwrite``) or continued (``resume``), and
never the run's own distillation teacher. A start that failed before its first epoch was saved (NaN loss, a refused
model, an overflowing chip, a killed process) leaves nothing that blocks the corrected command: its files are removed
when it fails (:func:`remove_failed_start`), and a folder holding only them is started afresh.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from neft.common.errors import SettingError
from neft.training.config import TrainConfig
from neft.training.log import epochs_trained

__all__ = ["RunExistsError", "START_FILES", "config_stamp", "remove_failed_start"]

START_FILES = frozenset({"config.json", "train_log.csv", "tensorboard"})  # what a run writes before its first epoch


class RunExistsError(FileExistsError):
    """The run directory already holds a run; pass overwrite=True (``--overwrite``) or resume=True (``--resume``)."""


def _check_not_teacher(config: TrainConfig, out: Path) -> None:
    """Refuse a run directory ``out`` that is, or holds, the run's own distillation teacher (replacing it with
    overwrite would delete the teacher)."""
    if config.teacher is None:
        return
    teacher, target = Path(config.teacher).resolve(), out.resolve()
    if teacher == target or target in teacher.parents:
        raise SettingError("teacher", f"the run directory {str(out)!r} is (or holds) the teacher {config.teacher!r};"
                                      " give the distilled run its own directory (--out)")


def _failed_start(out: Path, logged: bool) -> bool:
    """Whether ``out`` holds only what a training run writes before its first epoch is saved: a ``config.json`` and
    at most :data:`START_FILES`, nothing trained. With ``logged`` (a folder found, not one this process just wrote)
    its ``train_log.csv`` must also be there with no epoch: the trace a start leaves, so a folder holding a
    ``config.json`` alone is never taken for one."""
    entries = {path.name for path in out.iterdir()} if out.is_dir() else set()
    if "config.json" not in entries or not entries <= START_FILES:
        return False
    return not logged or ("train_log.csv" in entries and epochs_trained(out) == 0)


def config_stamp(out: Path) -> tuple[int, int] | None:
    """``(inode, mtime in ns)`` of ``out/config.json``, None without one: a different stamp after a start says that
    start wrote it."""
    try:
        status = (out / "config.json").stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def remove_failed_start(out: Path, created: bool, logged: bool = False) -> None:
    """Remove what a failed start wrote into ``out`` (only when :func:`_failed_start`), and ``out`` itself when
    this run ``created`` it and it is left empty."""
    if not _failed_start(out, logged):
        return
    for name in START_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if created and not any(out.iterdir()):
        out.rmdir()


def _prepare_out(out: Path, resume: bool, overwrite: bool, resumable: bool = True) -> bool:
    """Create the run directory (a failed start's files replaced, :func:`_failed_start`); True when resuming from
    ``last.pt``. ``resumable`` False (``neft import``): an existing run's error offers no resume."""
    if resume and (out / "last.pt").is_file():
        return True
    remove_failed_start(out, created=False, logged=True)  # nothing trained there: the corrected command starts afresh
    if resume and (out / "checkpoint.pt").is_file():  # a fresh start would replace the trained network
        raise RunExistsError(f"cannot resume {str(out)!r}: it has no last.pt (removed, or the run predates it), so "
                             "it would start from epoch 1 and replace its checkpoint.pt; start it afresh with "
                             "overwrite=True (--overwrite), or train into another directory (--out)")
    if out.exists() and any(out.iterdir()) and not resume:
        if not overwrite:
            resume_it = "continue it with resume=True (--resume), " if resumable else ""
            raise RunExistsError(f"run directory {str(out)!r} already exists; {resume_it}replace it with "
                                 "overwrite=True (--overwrite), or choose another directory (--out)")
        if not (out / "config.json").is_file():
            raise RunExistsError(f"{str(out)!r} is not a neft run directory (no config.json); refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return False
