"""Resuming a run bit-exactly: ``last.pt`` (model, IRS heads, optimiser, scheduler, data order, counters) written
after every epoch and read back, and the check that a resumed run keeps the settings it was started with.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from neft import models
from neft.common import distributed
from neft.store import checkpoint
from neft.training.config import RECORDED, TrainConfig, read_config
from neft.training.run import Run


def inherit_init(config: TrainConfig, out: Path) -> None:
    """On resume, an ``init`` left unset (None) takes the one ``out/config.json`` records, so a run started when
    every network's default init was Kaiming (an import-path network's default is now its own init) resumes
    unchanged.

    Raises:
        ValueError: ``out/config.json`` is damaged (:func:`neft.training.config.read_config`).
    """
    if config.init is None and (out / "config.json").is_file():
        config.init = read_config(out).get("init")


def _check_resume_settings(config: TrainConfig, out: Path) -> None:
    """Refuse to resume ``out`` with settings other than those it was started with (the message names each
    differing value; more ``epochs`` than planned are no change: they extend the run, :func:`_extend`), or when
    the source file of its import-path model changed since."""
    if not (out / "config.json").is_file():
        return
    recorded = read_config(out)
    # settings added in later versions take their defaults when an older config.json lacks them
    saved = {**dataclasses.asdict(TrainConfig()), **recorded}
    saved.pop(RECORDED, None)
    current = dataclasses.asdict(config)
    pinned = recorded.get(RECORDED, {}).get("teacher")
    if pinned and config.teacher:  # the teacher is pinned by its checkpoint's digest, wherever it now lies
        now = checkpoint.digest(config.teacher)
        if now != pinned["sha256"]:
            raise ValueError(f"cannot resume {str(out)!r}: its teacher {config.teacher!r} is not the network it "
                             f"started from (checkpoint sha256 {pinned['sha256'][:12]}... then, {now[:12]}... now: "
                             "retrained or replaced); restore that teacher or train a new run")
        current["teacher"] = saved.get("teacher")  # same digest: another spelling or location of the same teacher
    changed = sorted(k for k in saved.keys() | current.keys()
                     if k not in checkpoint.WHERE_SETTINGS and saved.get(k) != current.get(k))
    if "epochs" in changed and isinstance(current["epochs"], int) and current["epochs"] > saved["epochs"]:
        changed.remove("epochs")  # more epochs: the run is extended (restore, _extend)
    if changed:
        values = "; ".join(f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} given" for k in changed)
        raise ValueError(f"cannot resume {str(out)!r} with different settings ({', '.join(changed)}): {values}; "
                         f"{resume_hint(out)}")
    source = recorded.get(RECORDED, {}).get("model_source")
    if source and models.registry.describe(config.model)["sha256"] != source["sha256"]:
        raise ValueError(f"cannot resume {str(out)!r}: the model source {source['file']} changed since the run "
                         f"was trained (sha256 {source['sha256'][:12]}... in the run, "
                         f"{models.registry.describe(config.model)['sha256'][:12]}... now); restore the file or "
                         "train a new run")


def resume_hint(out: Path) -> str:
    """What to do when a resume is refused for other settings: the run's own are in its config.json (never
    ``--overwrite``, which would delete its trained epochs)."""
    return (f"the run's settings are in {str(out / 'config.json')!r}: resume with those (give only --resume --out "
            f"{out}), or train the new settings into another run directory (--out)")


def save_last(run: Run) -> None:
    """Write ``last.pt`` of ``run``: everything needed to continue it after the epoch just done."""
    checkpoint.write({"config": dataclasses.asdict(run.config),  # whose last.pt this is (checked on resume)
                      "model": run.model.state_dict(), "heads": run.objective.modules().state_dict(),
                      "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                      "data_rng": run.data_generator.get_state(), "state": run.state}, run.out / "last.pt")


def load_last(out: Path) -> dict:
    """The ``last.pt`` dict of the run directory ``out`` (on the CPU).

    Raises:
        ValueError: the file is truncated or damaged.
    """
    try:
        return torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or damaged file, whatever torch says
        raise ValueError(f"{str(out / 'last.pt')!r} is truncated or damaged ({type(error).__name__}): "
                         "this run cannot continue from it; start it afresh with overwrite=True "
                         "(--overwrite), after copying its checkpoint.pt elsewhere to keep that "
                         "network") from None


def restore(run: Run, saved: dict) -> None:
    """Continue from a ``last.pt`` dict: weights, IRS heads, optimiser, scheduler, data order, counters.

    A run given more epochs than ``last.pt`` planned is extended (:func:`_extend`).

    Raises:
        ValueError: ``last.pt`` is another run's: its recorded settings differ from this run's (more epochs
            planned included), or it holds another network's weights (another architecture or width).
    """
    # a last.pt written before it recorded its settings has none: then its weights' shapes tell
    values = checkpoint.settings_changes(saved.get("config", {}), dataclasses.asdict(run.config), "last.pt",
                                         "this run")
    planned = saved.get("config", {}).get("epochs", run.config.epochs)
    if planned > run.config.epochs:  # a run is only ever extended
        values = f"epochs: {planned} in last.pt, {run.config.epochs} in this run" + (f"; {values}" if values else "")
    config = str(run.out / "config.json")
    fixes = (f"or {config!r} was edited since it was written: restore the run's settings in config.json or put back "
             "the run's own last.pt; to train other settings, use another run directory (--out)")
    if values:
        raise ValueError(f"{str(run.out / 'last.pt')!r} belongs to another run ({values}), {fixes}")
    mismatch = checkpoint.state_dict_mismatch(run.model.state_dict(), saved["model"])
    if mismatch:
        raise ValueError(f"{str(run.out / 'last.pt')!r} does not fit {run.config.model!r} (width "
                         f"{run.config.width:g}): {mismatch}; it belongs to another run, {fixes}")
    run.model.load_state_dict(saved["model"])
    run.objective.modules().load_state_dict(saved["heads"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.data_generator.set_state(saved["data_rng"])
    run.state = saved["state"]
    _rescore_best(run)
    if planned != run.config.epochs:
        _extend(run, planned)
    if run.state.get("extended") and distributed.is_main():  # config.json, rewritten at the start, keeps them
        config = json.loads((run.out / "config.json").read_text())
        config[RECORDED]["extended"] = run.state["extended"]
        (run.out / "config.json").write_text(json.dumps(config, indent=2))


def _rescore_best(run: Run) -> None:
    """Score the kept checkpoint again where it was chosen on another score than this run's epochs get: a run at
    sigma 0 on a chip that differs from the clean network, trained before such runs were scored on noisy validation
    chips (its ``last.pt`` records no ``best_kind``), chose its epochs on its ideal layers' clean accuracy. The kept
    network is then scored on the noisy chips, so that the epochs still to come compete with it on one score."""
    kind = run.selection.kind
    scored = run.state.get("best_kind", "noisy" if run.config.sigma > 0 else "clean")
    if scored != kind and run.state["best_epoch"] > 0:
        kept = checkpoint.load(run.out, map_location=run.device, model=copy.deepcopy(run.model))
        _, noisy = run.selection.score(kept, run.dataset, run.config, run.device, run.calibration)
        if distributed.is_main():
            print(f"the kept epoch {run.state['best_epoch']} was chosen on its {scored} validation accuracy "
                  f"({run.state['best']:.2f} %); scored again on the {kind} one ({noisy:.2f} %), which chooses "
                  "from now on", file=sys.stderr)
        run.state["best"] = noisy
    run.state["best_kind"] = kind


def _extend(run: Run, planned: int) -> None:
    """Continue a run planned for ``planned`` epochs to ``run.config.epochs`` (more; docs/method.md, 'Training
    recipe'): the cosine schedule is stretched to the new total from the epoch done on, its learning rate set to
    ``lr * (1 + cos(pi * epoch / epochs)) / 2`` (a step up from the shorter schedule's value, which had already
    decayed further), and the extension recorded in ``run.state["extended"]`` (``config.json``: ``recorded``).
    The result is not bit-identical to a run planned with the new total from the start."""
    done, epochs = run.state["epoch"], run.config.epochs
    for group, base in zip(run.optimizer.param_groups, run.scheduler.base_lrs):
        group["lr"] = base * (1 + math.cos(math.pi * done / epochs)) / 2
    run.scheduler.T_max = epochs
    run.scheduler._last_lr = [group["lr"] for group in run.optimizer.param_groups]
    run.state["extended"] = [*run.state.get("extended", []), {"from_epochs": planned, "to_epochs": epochs,
                                                               "after_epoch": done}]
