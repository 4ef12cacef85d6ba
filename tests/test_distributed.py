"""Scale-out with torch.distributed: 2 CPU processes with gloo.

The training scenarios and a Monte Carlo evaluation through the crossbar circuit run in one pair of processes (one
process group, one `train` after another, as a long-lived job would): spawning a pair per test cost each test two
interpreter and torch start-ups."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from neft import runs
from neft.experiments import grid as experiments
from neft.training import TrainConfig, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_EVEN = dict(model="lenet5", dataset="mnist-5k", method="vanilla", sigma=0.0, epochs=1, test_subset=100,
             batch_size=128, select_on="test", val_runs=2)
# scenario name -> (TrainConfig settings, data_dir on rank 0 and rank 1); the failing one runs last
SCENARIOS = {
    "even": ({**_EVEN, "train_subset": 256}, (None, None)),
    "uneven131": ({**_EVEN, "train_subset": 131}, (None, None)),
    "uneven129": ({**_EVEN, "train_subset": 129}, (None, None)),
    "irs": (dict(model="lenet5", dataset="mnist-5k", method="irs", sigma=0.1, epochs=2, train_subset=1200,
                 test_subset=300, batch_size=64, val_runs=2, init="torch"), (None, None)),
    "batchnorm": (dict(model="vgg8", width=0.125, dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=1,
                       train_subset=256, test_subset=100, batch_size=64, val_runs=2, init="torch"), (None, None)),
    # through the crossbar circuit: tiles, DAC, bit-sliced ADC, straight-through rounding
    "circuit": ({**_EVEN, "train_subset": 256, "tile_rows": 64, "dac_bits": 4, "adc_bits": 4, "adc_mode": "sliced"},
                (None, None)),
    "circuit-irs": ({**_EVEN, "train_subset": 256, "tile_rows": 64, "dac_bits": 4, "adc_bits": 4, "adc_mode": "analog",
                     "method": "irs", "sigma": 0.1}, (None, None)),
    "error": (dict(model="lenet5", dataset="fashion-mnist", method="vanilla", epochs=1, train_subset=64),
              (None, "MISSING")),
}
# Monte Carlo evaluation through the circuit (tiles, DAC, ADC, read noise per read), one process and sharded
_CIRCUIT_EVAL = dict(sigmas="0.2", runs=5, test_subset=200, tile_rows=64, dac_bits=5, adc_bits=5, read_sigma=0.1,
                     memory_format="contiguous", compile=False, chips_per_pass=1, precision="fp32")
_SHARDED_EVAL = {**_CIRCUIT_EVAL, "name": "sharded-adc", "chips_per_pass": 2}  # 5 chips: rounds of 2 x 2 ranks


def _record(path, work):
    """Write ``work()``'s result, or the error it raised, to ``path`` as JSON."""
    try:
        result = work()
    except Exception as error:  # noqa: BLE001 - reported to the test
        result = {"error": f"{type(error).__name__}: {error}"}
    path.write_text(json.dumps(result))


def _evaluate(run_dir):
    point = runs.evaluate_run(run_dir, progress=False, **_SHARDED_EVAL)["per_sigma"][0]
    return {"per_run": point["accuracy"]["per_run"], "ekl": point["ekl"]}


def _worker(rank, world, port, root, evaluated_run):
    """Train every scenario, then evaluate ``evaluated_run`` through the circuit before the failing scenario."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from neft.common import distributed

    try:
        for name, (settings, data_dirs) in SCENARIOS.items():
            if name == "error":
                (root / "evaluation").mkdir(exist_ok=True)
                _record(root / "evaluation" / f"rank{rank}.json", lambda: _evaluate(evaluated_run))
            data_dir = data_dirs[rank] and str(root / data_dirs[rank])
            (root / name).mkdir(exist_ok=True)
            _record(root / name / f"rank{rank}.json", lambda: {"summary": train(
                TrainConfig(**{**settings, "data_dir": data_dir}), root / name / "run", progress=False)})
    finally:
        distributed.cleanup()


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, trained_run):
    """Every scenario trained by 2 gloo ranks, and the evaluation of ``trained_run`` through the circuit (name
    "evaluation"): name -> (run directory, [rank 0 result, rank 1 result])."""
    root = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, _free_port(), root, trained_run), nprocs=2, join=True,
                       start_method=experiments.worker_start_method())  # as grid workers start
    return {name: (root / name / "run", [json.loads((root / name / f"rank{r}.json").read_text()) for r in range(2)])
            for name in [*SCENARIOS, "evaluation"]}


def test_ddp_step_at_sigma_zero_equals_a_single_process_step(ddp, tmp_path):
    out, ranks = ddp["even"]
    assert all("summary" in r for r in ranks), ranks
    train(TrainConfig(**SCENARIOS["even"][0]), tmp_path / "single", progress=False)
    ddp_weights = torch.load(out / "last.pt", weights_only=True)["model"]
    single = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    for name, value in single.items():
        assert torch.allclose(ddp_weights[name], value, atol=1e-5), name
    # only rank 0 wrote files, and nothing else appeared
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "last.pt", "summary.json",
                                                     "train_log.csv"]


@pytest.mark.parametrize("images", [131, 129])
def test_ddp_with_uneven_last_batches(ddp, tmp_path, images):
    """131 images in batches of 128: the last step has 3 images, 2 on rank 0 and 1 on rank 1, and the weighted
    losses give the single-process step. 129: the last step's single image would leave rank 1 empty: skipped."""
    out, ranks = ddp[f"uneven{images}"]
    assert all("summary" in r for r in ranks), ranks
    if images == 131:
        train(TrainConfig(**SCENARIOS["uneven131"][0]), tmp_path / "single", progress=False)
        ddp_weights = torch.load(out / "last.pt", weights_only=True)["model"]
        single = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
        for name, value in single.items():
            assert torch.allclose(ddp_weights[name], value, atol=1e-5), name


def test_ddp_ovf_and_irs_learn_and_ranks_agree(ddp, tmp_path):
    _, ranks = ddp["irs"]
    summaries = [r["summary"] for r in ranks]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]  # identical parameters on both ranks
    single = train(TrainConfig(**SCENARIOS["irs"][0]), tmp_path / "single", progress=False)
    assert summaries[0]["test_accuracy_clean"] > 35, (summaries[0], single)  # chance is 10 %
    assert abs(summaries[0]["test_accuracy_clean"] - single["test_accuracy_clean"]) < 15, (summaries[0], single)


def test_ddp_ranks_share_batchnorm_statistics(ddp):
    summaries = [r["summary"] for r in ddp["batchnorm"][1]]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]  # running mean/var included


def test_an_error_on_one_rank_ends_both(ddp):
    ranks = ddp["error"][1]
    assert "fashion-mnist not found" in ranks[1]["error"]
    assert "another rank failed" in ranks[0]["error"] and "fashion-mnist not found" in ranks[0]["error"]


def test_torchrun_evaluate_matches_one_process(trained_run, tmp_path):
    single = runs.evaluate_run(trained_run, sigmas="0.2", runs=5, test_subset=200, name="single",
                                     progress=False)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
               "-m", "neft", "evaluate", str(trained_run), "--sigmas", "0.2", "--runs", "5", "--test-subset", "200",
               "--name", "sharded", "--precision", "fp32", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    sharded = json.loads((trained_run / "sharded.json").read_text())
    assert sharded["per_sigma"][0]["accuracy"]["per_run"] == single["per_sigma"][0]["accuracy"]["per_run"]
    # EKL sums are all-reduced across ranks: equal up to float summation order
    assert sharded["per_sigma"][0]["ekl"] == pytest.approx(single["per_sigma"][0]["ekl"], rel=1e-6)
    assert done.stdout.count("wrote ") == 1  # one report, from rank 0


def test_ddp_with_the_crossbar_circuit_equals_one_process(ddp, trained_run, tmp_path):
    """Training through the circuit (tiles, DAC, bit-sliced ADC, straight-through rounding) and a Monte Carlo
    evaluation through it (tiles, DAC, ADC, read noise per read; 2 chips per pass with vmap), each sharded over 2
    ranks (in the shared spawn): every rank calibrates the converter ranges on the same training images and each
    chip's read noise is keyed by its own seed, so the step and the per-run accuracies are those of one process.
    IRS (heads on taps, noisy forwards seeded per rank) trains through the circuit too, the ranks agreeing."""
    for name in ("circuit", "circuit-irs"):
        first, second = ddp[name][1]
        assert "summary" in first and "summary" in second, (first, second)
        assert first["summary"]["weights_sha256"] == second["summary"]["weights_sha256"]  # identical on both ranks
    train(TrainConfig(**SCENARIOS["circuit"][0]), tmp_path / "single", progress=False)
    ddp_weights = torch.load(ddp["circuit"][0] / "last.pt", weights_only=True)["model"]
    single = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    for name, value in single.items():
        assert torch.allclose(ddp_weights[name], value, atol=1e-5), name
    point = runs.evaluate_run(trained_run, name="single-adc", progress=False, **_CIRCUIT_EVAL)["per_sigma"][0]
    assert len(set(point["accuracy"]["per_run"])) > 1  # the chips differ: the comparison is not vacuous
    for rank in ddp["evaluation"][1]:  # every rank ends with the full result
        assert "per_run" in rank, rank
        assert rank["per_run"] == point["accuracy"]["per_run"]
        assert rank["ekl"] == pytest.approx(point["ekl"], rel=1e-6)
