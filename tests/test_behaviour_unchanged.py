"""Behaviour kept through refactors: per-run accuracies of fixed evaluations and each objective's loss on one batch,
compared with the values recorded in ``tests/data/behaviour_reference.json``.

The reference was recorded before the code moved into one package per concept (CHANGELOG.md, 0.2.0); a change of
where code lives must reproduce it. On the machine that recorded it the values agree bit for bit (the losses are
stored as ``float.hex``); another CPU may pick other fp32 kernels, so losses are compared to 1e-5 relative and
accuracies to one test image. Re-record (only for a deliberate change of behaviour, said in CHANGELOG.md) with
``python tests/test_behaviour_unchanged.py --record``.
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from neft import data, models
from neft.runs.evaluate import evaluate_run
from neft.training import TrainConfig, objectives, train

REFERENCE = Path(__file__).parent / "data" / "behaviour_reference.json"
TEST_IMAGES = 200  # per evaluation: one image is 0.5 percentage points
EVALUATIONS = {  # name: evaluate_run settings (runs, seed and test_subset shared below)
    "gaussian": dict(sigmas=[0.05, 0.2], device_model="RRAM4"),
    "realistic-drift": dict(sigmas=[0.05], device_model="PCM-chip", stuck_off=0.01, drift_time=3.15e7),
    "tiles-adc-read": dict(sigmas=[0.05], quantize=True, tile_rows=64, dac_bits=8, adc_bits=6, read_sigma=0.02),
    "write-verify": dict(sigmas=[0.2], write_verify=0.1, verify_select="magnitude", verified_sigma=0.02),
}
LOSS_SETTINGS = {"ovf": dict(beta=1e-3), "irs": dict(beta=1e-2), "rcg": dict(rcg_scale=1.2),
                 "lipschitz": dict(lipschitz_lambda=0.01), "correctnet": dict(correctnet_lambda=5e-4)}


def _trained_run(out: Path) -> Path:
    train(TrainConfig(model="lenet5", dataset="mnist-5k", method="noise-injection", sigma=0.05, epochs=10,
                      train_subset=1024, test_subset=TEST_IMAGES, val_runs=1, init="torch", seed=3),
          out, progress=False)
    return out


def _accuracies(run: Path) -> dict:
    accuracies = {}
    for name, settings in EVALUATIONS.items():
        results = evaluate_run(run, runs=4, seed=11, test_subset=TEST_IMAGES, name=name, progress=False,
                               precision="fp32", compile=False, chips_per_pass=1, **settings)
        accuracies[name] = [entry["accuracy"]["per_run"] for entry in results["per_sigma"]]
    return accuracies


def _losses() -> dict:
    dataset = data.load("mnist-5k", seed=0, train_subset=64, test_subset=8)
    x, y = next(dataset.batches("train", 32))
    losses = {}
    for method in objectives.METHODS:
        torch.manual_seed(5)
        model = models.create("lenet5", num_classes=10, in_channels=1, init="torch")
        teacher = models.create("lenet5", num_classes=10, in_channels=1, init="torch") if method == "distill" else None
        objective = objectives.create(method, model, x, 10, sigma=0.1, generator=torch.Generator().manual_seed(7),
                                      teacher=teacher, **LOSS_SETTINGS.get(method, {}))
        loss, _ = objective.loss(model, x, y)
        losses[method] = loss.item().hex()
    return losses


def measure(workdir: Path) -> dict:
    torch.set_num_threads(1)
    return {"accuracies": _accuracies(_trained_run(workdir / "run")), "losses": _losses()}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return measure(tmp_path_factory.mktemp("behaviour"))


@pytest.mark.parametrize("name", EVALUATIONS)
def test_per_run_accuracies_unchanged(measured, name):
    expected = json.loads(REFERENCE.read_text())["accuracies"][name]
    got = measured["accuracies"][name]
    assert len(got) == len(expected)
    for got_runs, expected_runs in zip(got, expected):
        assert got_runs == pytest.approx(expected_runs, abs=100 / TEST_IMAGES + 1e-9)


@pytest.mark.parametrize("method", objectives.METHODS)
def test_objective_loss_unchanged(measured, method):
    expected = float.fromhex(json.loads(REFERENCE.read_text())["losses"][method])
    got = float.fromhex(measured["losses"][method])
    assert math.isfinite(got) and got == pytest.approx(expected, rel=1e-5)


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        REFERENCE.write_text(json.dumps(measure(Path(tmp)), indent=1) + "\n")
    print(f"recorded {REFERENCE}")
