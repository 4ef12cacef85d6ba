"""Concurrent writers and failing disks (docs/results.md, 'Run directory'): a run directory has one writer at a
time (a lock file), an unwritable folder is refused before the Monte Carlo work, a failed write leaves nothing that
blocks the rerun, and a grid's workers stop with their parent."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from neft import reporting as report
from neft import runs
from neft.cli.main import main
from neft.store import lock as runlock

EVALUATE = ["--quiet", "--runs", "2", "--sigmas", "0.2", "--compile", "off"]


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("neft: error: ") and "Traceback" not in err[0], err
    return err[0]


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_second_writer_of_a_run_directory_is_refused(run_dir, capsys):
    before = _files(run_dir)
    with runlock.hold(run_dir, "neft evaluate (the first)"):
        assert runlock.lock_path(run_dir).is_file()
        assert main(["evaluate", str(run_dir), *EVALUATE]) == 2
        assert f"is being written by neft evaluate (the first) (process {os.getpid()}" in _one_error(capsys)
        assert main(["train", "--model", "lenet5", "--method", "vanilla", "--sigma", "0", "--epochs", "1",
                     "--out", str(run_dir / "." / ""), "--overwrite", "--quiet"]) == 2  # another spelling, one lock
        assert "is being written by" in _one_error(capsys)
    assert not runlock.lock_path(run_dir).exists() and _files(run_dir) == before


def test_a_stale_lock_is_taken_over(run_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runlock.lock_path(run_dir).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename,
                                                      "command": "neft train"}))
    results = runs.evaluate_run(run_dir, sigmas=[0.2], runs=2, name="stale", progress=False, compile=False)
    assert results["per_sigma"][0]["runs"] == 2 and not runlock.lock_path(run_dir).exists()


def test_an_unwritable_run_directory_is_refused_before_the_monte_carlo_work(run_dir, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def no_work(*args, **kwargs):
        raise AssertionError("the Monte Carlo work started")

    monkeypatch.setattr(runlock.tempfile, "mkstemp", read_only)  # root may write anywhere: the file system says no
    monkeypatch.setattr(runs, "evaluate", no_work)
    before = _files(run_dir)
    assert main(["evaluate", str(run_dir), *EVALUATE, "--name", "ro"]) == 2
    assert f"cannot write {str(run_dir)!r}: the file system is read-only" in _one_error(capsys)
    assert _files(run_dir) == before


def test_a_full_disk_leaves_nothing_that_blocks_the_rerun(run_dir, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    before = _files(run_dir)
    with monkeypatch.context() as patch:
        patch.setattr(report, "plot", full)  # the CSV is written, then the disk fills
        assert main(["evaluate", str(run_dir), *EVALUATE, "--name", "full"]) == 2
    assert "the disk is full" in _one_error(capsys)
    assert _files(run_dir) == before  # no CSV, PNG or temporary left behind
    assert main(["evaluate", str(run_dir), *EVALUATE, "--name", "full"]) == 0  # the same command again
    assert {"full.json", "full.csv", "full_accuracy_vs_sigma.png"} <= set(_files(run_dir))


def test_a_failed_checkpoint_write_is_one_error_and_no_temporary(tmp_path, capsys, monkeypatch):
    import torch

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] .\nPytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet5", "--method", "vanilla", "--sigma", "0", "--epochs", "1",
                 "--train-subset", "64", "--test-subset", "32", "--out", str(out), "--quiet"]) == 2
    assert "cannot write" in _one_error(capsys)
    assert not list(out.glob("*.tmp")) and not runlock.lock_path(out).exists()


LONG_GRID = """
[experiment]
methods = ["noise-injection", "ovf"]
train_sigmas = [0.2]
seeds = [0]
[train]
model = "lenet5"
dataset = "digits"
epochs = 500
train_subset = 500
test_subset = 100
val_runs = 2
[evaluate]
runs = 2
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc (Linux)")
def test_killing_a_grid_parent_stops_its_workers(tmp_path):
    """A grid killed with SIGKILL (no chance to clean up): its workers, forked from the forkserver (their parent,
    which the workers themselves keep alive), notice that the grid is gone and exit."""
    preset = tmp_path / "grid.toml"
    preset.write_text(LONG_GRID)
    grid = subprocess.Popen([sys.executable, "-m", "neft", "reproduce", str(preset), "--out", str(tmp_path / "grid"),
                             "--cells-per-device", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"})
    workers = []
    for _ in range(1200):  # each worker locks its cell's run directory (its pid in the lock file) once it trains
        workers = [pid for pid in map(_lock_owner, tmp_path.glob("grid/.*.neft-lock")) if pid is not None]
        if len(workers) == 2 or grid.poll() is not None:
            break
        time.sleep(0.05)
    assert len(workers) == 2, f"the grid's two workers did not start (grid exit code {grid.poll()})"
    os.kill(grid.pid, signal.SIGKILL)
    grid.wait()
    for _ in range(100):  # the workers notice at once (end-of-file on their pipe from the grid)
        alive = [pid for pid in workers if _running(pid)]
        if not alive:
            break
        time.sleep(0.05)
    else:
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"grid workers {alive} outlived their killed grid")


def _lock_owner(lock) -> int | None:
    """The pid in a run directory's lock file; None while its owner is still writing it."""
    try:
        return int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a worker's parent, the forkserver, reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_interrupted_sweep_resumes_its_unfinished_points(run_dir, capsys, monkeypatch):
    import importlib

    module = importlib.import_module("neft.runs.evaluate")
    engine, calls = module.evaluate, []

    def interrupted(*args, **kwargs):  # the second point is interrupted (Ctrl-C) in its Monte Carlo work
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return engine(*args, **kwargs)

    for axis, values, files in (("--write-verify", "0,0.1", ("wv0", "wv0.1")),
                                ("--drift-times", "1,3600", ("t1", "t3600"))):
        sweep = ["evaluate", str(run_dir), *EVALUATE, "--name", "sweep", axis, values]
        if axis == "--drift-times":
            sweep += ["--quantize", "--drift-nu-mean", "0.05"]
        calls.clear()
        with monkeypatch.context() as patch:
            patch.setattr(module, "evaluate", interrupted)
            assert main(sweep) == 130
        first, second = (run_dir / f"sweep_{files[0]}.json", run_dir / f"sweep_{files[1]}.json")
        done = first.read_text()
        assert not second.exists()
        capsys.readouterr()
        assert main(sweep) == 0  # the same command, no --overwrite: only the unfinished point is computed
        assert f"kept {first}" in capsys.readouterr().out
        assert first.read_text() == done and second.is_file()
        assert main([*sweep, "--seed", "1"]) == 2  # other settings: the earlier points are not this sweep's
        assert f"{str(run_dir / f'sweep_{files[0]}.json')!r} already exists" in _one_error(capsys)
        for path in run_dir.glob("sweep_*"):
            path.unlink()


def test_a_full_disk_leaves_no_partial_report(run_dir, tmp_path, capsys, monkeypatch):
    from neft.reporting import report as report_module

    runs.evaluate_run(run_dir, sigmas=[0.0, 0.2], runs=2, name="for_report", progress=False, compile=False)
    out = tmp_path / "report"
    command = ["report", str(run_dir / "for_report.json"), "--out", str(out)]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(report_module, "plot", full)  # the CSV is written, then the disk fills
        assert main(command) == 2
    assert f"cannot write {str(out)!r}: the disk is full" in _one_error(capsys)
    assert not out.exists() or _files(out) == []  # no partial report.csv, no temporary
    real_open = type(out).open

    def full_at_the_csv(path, *args, **kwargs):  # the error names the file being written
        if path.suffix == ".csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(type(out), "open", full_at_the_csv)
        assert main(command) == 2
    assert f"cannot write {str(out / 'report.csv')!r}: the disk is full" in _one_error(capsys)
    assert _files(out) == []
    assert main(command) == 0  # the same command again
    assert {"report.md", "report.csv", "accuracy_vs_sigma.png"} == set(_files(out))


TRAIN = ["train", "--model", "lenet5", "--method", "vanilla", "--sigma", "0", "--epochs", "1", "--train-subset", "640",
         "--test-subset", "32", "--quiet"]


def test_a_failed_training_leaves_nothing_that_blocks_the_corrected_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--lr", "1e9", "--out", str(out)]) == 2  # the loss becomes NaN in the first epoch
    assert "the training loss became nan" in _one_error(capsys)
    assert not out.exists() and not runlock.lock_path(out).exists()
    out.mkdir()  # a folder made beforehand is kept, emptied
    assert main([*TRAIN, "--lr", "1e9", "--out", str(out)]) == 2
    assert _files(out) == []
    capsys.readouterr()
    # a start killed before its first epoch (no cleanup ran): only config.json and train_log.csv
    (out / "config.json").write_text("{}")
    (out / "train_log.csv").write_text("epoch,lr\n")
    assert main([*TRAIN, "--out", str(out)]) == 0  # the corrected command, no --overwrite needed
    assert {"config.json", "checkpoint.pt", "last.pt", "summary.json"} <= set(_files(out))
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3
    assert main([*TRAIN, "--out", str(out)]) == 2  # a trained run is still never replaced silently
    assert "already exists" in _one_error(capsys)


def test_a_model_without_a_mapped_layer_is_refused_before_the_run_directory(tmp_path, capsys):
    nets = tmp_path / "nets.py"
    nets.write_text("import torch\nfrom torch import nn\n\n\n"
                    "class Plain(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.w = nn.Parameter(torch.randn(32 * 32, 10) * 0.01)\n\n"
                    "    def forward(self, x):\n"
                    "        return x.flatten(1) @ self.w\n\n\n"
                    "def plain(num_classes=10, in_channels=1):\n"
                    "    return Plain()\n")
    out = tmp_path / "run"
    command = [*TRAIN, "--model", f"{nets}:plain", "--method", "noise-injection", "--sigma", "0.1", "--out", str(out)]
    assert main(command) == 2
    assert "has no crossbar-mapped weight" in _one_error(capsys)
    assert not out.exists()
