"""Training logs: each objective's loss parts (train_log.csv), TensorBoard, one line per epoch off a terminal."""

import csv
import math

import pytest
import torch

from neft import make_generator, models
from neft.cli.main import main
from neft.training import TrainConfig, objectives, train


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1, init="torch")
    return model, torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))


@pytest.mark.parametrize("method, settings", [
    ("vanilla", {}), ("noise-injection", {"temperature": 2.0}), ("ovf", {"beta": 0.0}), ("ovf", {"beta": 0.5}),
    ("irs", {"beta": 0.3}), ("rcg", {}), ("lipschitz", {"lipschitz_lambda": 0.5}),
])
def test_loss_parts_add_up_to_the_loss(batch, method, settings):
    model, x, y = batch
    sigma = 0.0 if method == "vanilla" else 0.1
    objective = objectives.create(method, model, x, 10, sigma=sigma, generator=make_generator(1), **settings)
    loss, logs = objective.loss(model, x, y)
    assert set(objective.parts) <= set(logs) and "ce" in objective.parts
    if method in ("vanilla", "rcg", "lipschitz"):  # CE of the backbone's logits (+ the weighted penalty)
        assert float(loss.detach()) == pytest.approx(logs["ce"] + logs.get("penalty", 0.0), rel=1e-6)
        assert logs.get("penalty", 1.0) > 0  # LeNet-5's layers have spectral norms above 1 at init
    if method == "noise-injection":  # CE(z / T) is the loss, CE(z) the logged part: they differ for T = 2
        assert not math.isclose(float(loss.detach()), logs["ce"], rel_tol=1e-3)
    if method in ("ovf", "irs"):  # loss = CE(z / (N + 1)) + feedback; no feedback at beta 0
        assert (logs["feedback"] == 0.0) == (settings["beta"] == 0.0)


def test_distill_parts(batch):
    model, x, y = batch
    teacher = models.create("lenet5", 10, 1, init="torch")
    objective = objectives.create("distill", model, x, 10, sigma=0.1, teacher=teacher, distill_alpha=0.25,
                                  distill_temperature=2.0, generator=make_generator(1))
    loss, logs = objective.loss(model, x, y)
    assert float(loss.detach()) == pytest.approx(0.75 * logs["ce"] + 0.25 * logs["kl"], rel=1e-5)
    assert logs["kl"] > 0  # two independently initialised networks disagree


def test_train_log_has_the_parts_and_one_line_per_epoch_off_a_terminal(tmp_path, capsys):
    assert main(["train", "--model", "lenet5", "--init", "torch", "--method", "ovf", "--sigma", "0.1", "--epochs", "2",
                 "--train-subset", "128", "--test-subset", "64", "--val-runs", "2",
                 "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"] and "(ce " in epochs[0]
    assert "\r" not in out + err  # no bar redraws in a captured (non-terminal) output
    with (tmp_path / "run" / "train_log.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:5] == ["epoch", "lr", "loss", "ce", "feedback"]
    for row in rows:  # OVF's loss is CE(z / 4) + feedback, not the backbone's CE(z); beta 1e-3: a small feedback
        assert float(row["ce"]) != float(row["loss"]) and 0 < abs(float(row["feedback"])) < 0.05


def test_tensorboard_writes_the_log_or_says_how_to_install_it(tmp_path, capsys):
    config = TrainConfig(model="lenet5", method="vanilla", sigma=0.0, epochs=1, train_subset=64, test_subset=32,
                         tensorboard=True)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert main(["train", "--model", "lenet5", "--method", "vanilla", "--sigma", "0", "--epochs", "1",
                     "--tensorboard", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "argument --tensorboard: tensorboard=True needs the tensorboard package" in err[0]
        assert not (tmp_path / "run").exists()
        pytest.skip("tensorboard is not installed: the missing package is one clear error (checked)")
    train(config, tmp_path / "run", progress=False)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
