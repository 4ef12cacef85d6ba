"""Experiment grids: ``neft reproduce PRESET.toml`` runs a preset's cells (:mod:`neft.experiments.presets`,
:mod:`neft.experiments.cells`), one at a time, as a shard, or in local worker processes, and writes the report.

Each grid cell (method, training sigma, seed) is one run directory ``out/METHOD-sSIGMA-seedSEED``; a cell with a
``results.json`` is skipped, a cell with an unfinished training resumes from its last epoch, so an interrupted
grid continues where it stopped. The report pools each variant's Monte Carlo runs over seeds and, with several
seeds, adds the interval over seeds, paired differences and the convergence probability (:mod:`neft.reporting.report`).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from tqdm.auto import tqdm

from neft import data
from neft import reporting as report
from neft.common.compute import resolve_device
from neft.common.errors import SettingError, check_count
from neft.evaluation import metrics
from neft.experiments.cells import _cells, _eval_config, _teacher_cells, _train_config, cell_name
from neft.experiments.presets import load_preset
from neft.runs.evaluate import evaluate_run
from neft.training import TrainConfig, objectives, train, variants

__all__ = ["reproduce", "run_grid", "pooled_results"]


def run_cell(preset: dict, spec: str, sigma: float, seed: int, out: Path, device: str | None = None,
             beside_others: bool = False) -> dict:
    """Train (or resume) and evaluate one grid cell; returns its results (read back when already finished).
    ``beside_others``: the cell runs in parallel with others, so its lines start with ``[cell name]`` and it
    draws no progress bars."""
    run_dir = out / cell_name(spec, sigma, seed)
    results_file = run_dir / "results.json"
    if results_file.is_file():
        return report.load_results(results_file)[0]
    config = _train_config(preset, spec, sigma, seed, out)
    if device:
        config.device = device
    name = run_dir.name if beside_others else None
    if not (run_dir / "summary.json").is_file():
        train(config, run_dir, resume=True, progress=True, log_name=name)
    results = evaluate_run(run_dir, _eval_config(preset, spec, sigma), data_dir=config.data_dir,
                           device=config.device, overwrite=True, progress=not beside_others)
    if beside_others:
        print(f"[{name}] evaluated: " + ", ".join(f"sigma {p['sigma']:g} {p['accuracy']['mean']:.2f}%"
                                                  for p in results["per_sigma"]), flush=True)
    return results


def pooled_results(results: list[dict]) -> list[dict]:
    """Pool each (variant, training sigma) group's Monte Carlo runs over training seeds.

    Per evaluated sigma, the per-run accuracies of all seeds are concatenated into ``accuracy`` (mean over seeds
    and chips, per-chip CI); ``over_seeds`` holds the mean of the per-seed MC means with its t-interval over seeds
    (:func:`neft.evaluation.metrics.seed_interval`), the interval to compare methods with; EKL and confidence are
    averaged over seeds. Returns results-schema dicts with ``seeds`` listing the pooled training seeds.

    A group is one variant at one training sigma (0 for vanilla, whatever its run's ``sigma``) trained on one chip
    (:func:`neft.training.variants.training_chip`) and evaluated on one (its device model's name): networks
    trained against a chip and on the Gaussian model never pool.
    """
    groups: dict[tuple, list[dict]] = {}
    for result, label in zip(results, variants.labels(results)):
        key = (label, report.training_sigma(result), variants.training_chip(result),
               result.get("device_model", {}).get("name"))
        groups.setdefault(key, []).append(result)
    pooled = []
    for group in groups.values():
        points = {}
        for result in group:
            for point in result["per_sigma"]:
                points.setdefault(round(point["sigma"], 9), []).append(point)
        per_sigma = []
        for sigma, same in sorted(points.items()):
            per_run = [a for point in same for a in point["accuracy"]["per_run"]]
            per_sigma.append({
                "sigma": sigma, "runs": len(per_run), "accuracy": metrics.accuracy_summary(per_run),
                "over_seeds": metrics.seed_interval([p["accuracy"]["mean"] for p in same]),
                "ekl_x1e2": sum(p["ekl_x1e2"] for p in same) / len(same),
                "ekl": sum(p["ekl"] for p in same) / len(same),
                "confidence": sum(p["confidence"] for p in same) / len(same),
            })
        first = group[0]
        keys = ("model", "dataset", "device_model", "train_device_model", "train_circuit", "test_size", "method",
                "beta", "temperature", *objectives.METHOD_SETTINGS, "teacher", "evaluation",  # what labels name
                "init", "epochs", "train_subset", "num_classes")
        trained = [r["epochs_trained"] for r in group if r.get("epochs_trained") is not None]
        pooled.append({**{k: first[k] for k in keys if k in first}, "train_sigma": report.training_sigma(first),
                       "run": f"{len(group)} seed(s)",
                       **({"epochs_trained": min(trained)} if trained else {}),
                       "seeds": sorted(r["train_seed"] for r in group), "per_sigma": per_sigma})
    return pooled


def _run_shard(preset: dict, out: Path, device: str | None, shard: int, shards: int,
               cells: list[tuple[str, float, int]], beside_others: bool = False) -> list[dict]:
    """Run ``cells[shard::shards]`` (all of them for 0/1); ``beside_others``: a worker of a parallel grid (no bar
    of its own, cell-prefixed lines; the parent's bar counts the whole grid)."""
    cells = cells[shard::shards]
    results = []
    for method, sigma, seed in tqdm(cells, desc=f"grid cells {shard + 1}/{shards}" if shards > 1 else "grid cells",
                                    unit="cell", disable=beside_others):
        if not beside_others:
            tqdm.write(f"== {cell_name(method, sigma, seed)}")
        results.append(run_cell(preset, method, sigma, seed, out, device, beside_others))
    return results


def exit_with_parent(alive) -> None:
    """Stop this process (exit code 1) as soon as the grid process that started it is gone: a grid worker whose
    parent was killed would otherwise keep training cells nobody waits for. ``alive`` is the read end of a pipe
    (a ``multiprocessing`` ``Connection``) whose write end only the grid holds: it reads end-of-file once the grid
    has exited, however it ended (a forked worker's parent is the forkserver, which outlives the grid)."""

    def watch() -> None:
        try:
            alive.recv_bytes()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_start_method() -> str:
    """The start method of local worker processes: ``"forkserver"`` (its one server process imports torch and neft
    once, so a worker costs a fork instead of a torch start-up of about 3 CPU-s), or ``"spawn"`` where the
    platform has no forkserver (Windows)."""
    import torch.multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return "spawn"
    mp.set_forkserver_preload(["neft.experiments"])
    return "forkserver"


def _spawn_with_bar(workers: int, args: tuple, out: Path, cells: list[tuple[str, float, int]]) -> None:
    """Run the ``--parallel``/``--cells-per-device`` workers; one progress bar counts the finished ones of
    ``cells`` (the whole grid; a cell is finished when its ``results.json`` exists). The workers write to the
    standard output and error this process had when its first grid started workers (those of the forkserver)."""
    import torch.multiprocessing as mp

    def finished() -> int:
        return sum((out / cell_name(*cell) / "results.json").is_file() for cell in cells)

    method = worker_start_method()  # the workers stop when this process is gone: see exit_with_parent
    alive, grid_alive = mp.get_context(method).Pipe(duplex=False)  # this process alone holds the write end
    context = mp.start_processes(_parallel_worker, args=(workers, *args, alive), nprocs=workers, join=False,
                                 start_method=method)
    try:
        with tqdm(total=len(cells), initial=finished(), desc=f"grid cells ({workers} at once)", unit="cell") as bar:
            while not context.join(timeout=2):
                if finished() != bar.n:  # a redraw only when a cell finished: one line per cell in a log file
                    bar.update(finished() - bar.n)
            bar.update(finished() - bar.n)
    finally:
        grid_alive.close()
        alive.close()


def _parallel_worker(index: int, workers: int, preset: dict, out: Path, devices: int, share: int,
                     device: str | None, cells: list[tuple[str, float, int]], alive) -> None:
    """One of ``workers`` local workers of ``--parallel``/``--cells-per-device``: cells ``index::workers`` on GPU
    ``index % devices`` (or on ``device`` when given, or on the CPU without CUDA with 1/``share`` of its cores, the
    share of one of the cells run at once); it stops when the grid's process is gone (``alive``: see
    :func:`exit_with_parent`)."""
    import torch

    exit_with_parent(alive)

    if device in (None, "auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{index % devices}"
    if device in (None, "auto", "cpu"):
        device = "cpu"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // share))
    _run_shard(preset, out, device, index, workers, cells, beside_others=True)


def _check_same_settings(preset: dict, saved: Path) -> None:
    """Refuse to continue a grid folder whose cells were made with other [train] or [evaluate] settings (finished
    cells would be reused as if made with the new ones). Adding methods, sigmas or seeds is fine; so is another
    device or data folder.

    Raises:
        ValueError: naming the settings that differ.
    """
    if not saved.is_file():
        return
    old, new = json.loads(saved.read_text()), json.loads(json.dumps(preset, default=str))
    changed = [f"[{table}] {key}" for table in ("train", "evaluate")
               for key in sorted(set(old.get(table, {})) | set(new.get(table, {})))
               if key not in ("device", "data_dir") and old.get(table, {}).get(key) != new.get(table, {}).get(key)]
    if changed:
        raise ValueError(f"{str(saved.parent)!r} holds a grid made with other settings ({', '.join(changed)}); "
                         "its finished cells would be reused as they are: choose another output folder, or delete "
                         "that one to start afresh")


def run_grid(preset: dict, out: str | Path | None = None, device: str | None = None, parallel: int = 1,
             shard: tuple[int, int] = (0, 1), cells_per_device: int = 1) -> dict | None:
    """Run the cells of a validated preset, then write ``out/report.md``, ``report.csv`` and
    ``accuracy_vs_sigma.png``; returns the report paths.

    ``parallel`` > 1 spreads the cells over that many local GPUs (``cuda:0`` ...); ``cells_per_device`` > 1 runs
    that many cells at once on each device (one small cell does not fill a large GPU; on a CPU the cores are
    shared out between the cells). Distillation teachers run first, then the other cells; each of these phases
    starts one worker per unfinished cell at most, each with the core share of one of ``parallel *
    cells_per_device`` cells. Results are the same as one cell at a time: every cell has its own seeds.
    ``shard=(k, n)`` runs only cells ``k::n`` (one SLURM array task) and writes the report only if every cell of
    the grid is finished then (returns None otherwise).
    """
    out = Path(out or preset["experiment"]["out"])
    _check_same_settings(preset, out / "preset.json")
    out.mkdir(parents=True, exist_ok=True)
    (out / "preset.json").write_text(json.dumps(preset, indent=2, default=str))
    teachers = _teacher_cells(preset)  # distillation teachers first, then every other cell
    for cells in (teachers, [cell for cell in _cells(preset) if cell not in teachers]):
        if not cells:
            continue
        if parallel * cells_per_device > 1:
            import torch.multiprocessing as mp

            # only the unfinished cells, and no more workers than them (a worker costs a torch start-up)
            cells = [cell for cell in cells if not (out / cell_name(*cell) / "results.json").is_file()]
            if not cells:
                continue
            workers = min(parallel * cells_per_device, len(cells))
            try:
                _spawn_with_bar(workers, (preset, out, parallel, parallel * cells_per_device, device, cells),
                                out, _cells(preset))
            except mp.ProcessRaisedException as error:  # one line of the worker's error, not its traceback
                last = [line for line in str(error).strip().splitlines() if line.strip()][-1]
                raise ValueError(f"a grid worker stopped: {last}; finished cells are kept, rerun to continue") from None
        else:
            _run_shard(preset, out, device, *shard, cells)
    done = [out / cell_name(*cell) / "results.json" for cell in _cells(preset)]
    if not all(path.is_file() for path in done):
        print(f"{sum(p.is_file() for p in done)}/{len(done)} cells finished; the report is written once all are")
        return None
    results = report.load_results(done)
    for result in results:  # older results lack num_classes
        result.setdefault("num_classes", data.load(preset["train"].get("dataset", TrainConfig.dataset),
                                                   preset["train"].get("data_dir"), test_subset=1).num_classes)
    experiment = preset["experiment"]
    paths = report.write_report(pooled_results(results), out, overwrite=True,  # the grid's own report, refreshed
                                title=experiment.get("title", f"neft: {out.name}"),
                                notes=experiment.get("notes"))
    if len(experiment["seeds"]) > 1:
        (out / "report_seeds.json").write_text(json.dumps(report.seed_comparison(results), indent=1))
        with paths["markdown"].open("a") as file:
            file.write(f"\n{report.seed_sections(results)}\n**What these numbers show.** {report.findings(results)}\n")
    return paths


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` (K counted from 0, e.g. ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``) -> ``(K, N)``.

    Raises:
        ValueError: unless 0 <= K < N.
    """
    if not text:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        raise SettingError("shard", f"shard must be K/N with 0 <= K < N (e.g. 3/16), got {text!r}") from None
    return k, n


def reproduce(config: str | Path, out: str | Path | None = None, device: str | None = None,
              parallel: int = 1, shard: str | None = None, cells_per_device: int = 1) -> dict | None:
    """``neft reproduce``: validate a TOML preset, then run its grid (skipping finished cells) and report.
    ``parallel``, ``cells_per_device`` and ``shard`` as in :func:`run_grid`.

    Raises:
        FileNotFoundError / ValueError: see :func:`load_preset`; all raised before any training.
    """
    check_count("parallel", parallel, 1, "local GPUs")
    check_count("cells_per_device", cells_per_device, 1, "cells at once per device")
    if shard and parallel * cells_per_device > 1:
        raise SettingError("shard", "a shard runs one cell at a time; drop parallel/cells_per_device or the shard")
    if device:
        resolve_device(device)  # an unusable device fails before anything is written
    paths = run_grid(load_preset(config), out, device, parallel=parallel, shard=parse_shard(shard),
                     cells_per_device=cells_per_device)
    if paths:
        print(f"report: {paths['markdown']}\nplot: {paths['plot']}")
    return paths
