"""Data sets of your own: folder:PATH and npz:PATH (neft.data.own; docs/api.md, 'Your own network and data')."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from neft import data
from neft.cli.main import main
from neft.common.errors import SettingError

QUICK = ["--model", "lenet5", "--init", "torch", "--epochs", "1", "--val-runs", "2", "--sigma", "0.1", "--quiet",
         "--lr", "0.01", "--batch-size", "16"]


def _bars(folder, classes=("horizontal", "vertical"), per_class=30, size=(20, 24), mode="L", seed=0):
    """One class of images per stripe orientation, with noise: easy to learn, not trivial."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 80, size[::-1]).astype(np.uint8)
            if k == 0:
                image[::4] = 255
            else:
                image[:, ::4] = 255
            picture = Image.fromarray(image)
            picture = picture.convert("RGB") if mode == "RGB" else picture
            picture.save(folder / name / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_folder_with_a_seeded_split_is_gray_resized_and_normalised_on_training_images(tmp_path):
    _bars(tmp_path / "bars")
    (tmp_path / "bars" / "horizontal" / "notes.txt").write_text("not an image: skipped")
    dataset = data.load(f"folder:{tmp_path / 'bars'}", image_size=16)
    train, test = dataset.splits["train"], dataset.splits["test"]
    assert dataset.classes == ("horizontal", "vertical") and dataset.num_classes == 2
    assert train[0].shape == (48, 1, 16, 16) and test[0].shape == (12, 1, 16, 16) and train[0].dtype == torch.uint8
    x = train[0].double() / 255
    assert (dataset.mean == pytest.approx((float(x.mean()),))
            and dataset.std == pytest.approx((float(x.std(unbiased=False)),)))
    again = data.load(f"folder:{tmp_path / 'bars'}", image_size=16, seed=5)  # the split does not follow the run seed
    assert torch.equal(again.splits["test"][0], test[0])


def test_folder_with_train_and_test_is_rgb_when_any_image_is(tmp_path):
    _bars(tmp_path / "f" / "train", per_class=6)
    _bars(tmp_path / "f" / "test", per_class=2, mode="RGB", seed=1)
    dataset = data.load(f"folder:{tmp_path / 'f'}")
    assert dataset.in_channels == 3 and dataset.image_size == 32
    assert dataset.size("train") == 12 and dataset.size("test") == 4
    assert dataset.preprocess(dataset.splits["test"][0]).shape == (4, 3, 32, 32)


def test_npz_nhwc_uint8_and_nchw_float(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(tmp_path / "a.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    dataset = data.load(f"npz:{tmp_path / 'a.npz'}")
    assert dataset.splits["train"][0].shape == (20, 3, 8, 8) and dataset.num_classes == 3
    assert torch.equal(dataset.splits["train"][0][1, 2], torch.from_numpy(x[1, :, :, 2]))
    expected = x[:20].reshape(-1, 3).astype(np.float64).mean(0) / 255
    assert dataset.mean == pytest.approx(tuple(expected))
    floats = rng.uniform(0.2, 0.6, (30, 1, 5, 7)).astype(np.float32)  # non-square, in [0, 1], used as given
    np.savez(tmp_path / "b.npz", x_train=floats[:20], y_train=y[:20], x_test=floats[20:], y_test=y[20:])
    dataset = data.load(f"npz:{tmp_path / 'b.npz'}")
    x = dataset.preprocess(dataset.splits["train"][0])
    assert x.shape == (20, 1, 5, 7) and dataset.image_size is None
    assert (float(x.mean()) == pytest.approx(0.0, abs=1e-5)
            and float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4))


def test_folder_trains_and_evaluates_with_its_normalisation_recorded(tmp_path):
    _bars(tmp_path / "bars", per_class=40)
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{tmp_path / 'bars'}", *QUICK, "--epochs", "3", "--out", str(run)]) == 0
    recorded = json.loads((run / "config.json").read_text())["recorded"]["dataset"]
    dataset = data.load(f"folder:{tmp_path / 'bars'}")
    assert recorded["mean"] == pytest.approx(list(dataset.mean)) and recorded["classes"] == ["horizontal", "vertical"]
    assert main(["evaluate", str(run), "--runs", "3", "--sigmas", "0", "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == f"folder:{(tmp_path / 'bars').resolve()}" and results["test_size"] == 16
    assert results["per_sigma"][0]["accuracy"]["mean"] >= 80.0  # stripes are easy: chance is 50 %


def test_npz_in_a_preset(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = (rng.integers(0, 60, (60, 28, 28)) + 150 * y[:, None, None]).astype(np.uint8)  # bright vs dark
    np.savez(tmp_path / "d.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    preset = tmp_path / "grid.toml"
    preset.write_text(f"""
[experiment]
out = "{tmp_path / 'grid'}"
methods = ["noise-injection"]
train_sigmas = [0.1]
[train]
model = "lenet5"
dataset = "npz:{tmp_path / 'd.npz'}"
image_size = 32
epochs = 1
val_runs = 2
batch_size = 16
[evaluate]
runs = 2
""")
    assert main(["reproduce", str(preset)]) == 0
    results = json.loads((tmp_path / "grid" / "noise-injection-s0.1-seed0" / "results.json").read_text())
    assert results["test_size"] == 20


@pytest.mark.parametrize("case, message", [
    ("one_class", "has 1 class folder(s)"),
    ("unreadable", "cannot read image"),
    ("no_y_test", "lacks y_test"),
    ("negative_label", "labels must be 0 .. K - 1"),
    ("unseen_test_label", "test labels reach 5 but the training labels only 0 .. 1"),
    ("missing", "is not a .npz file"),
])
def test_bad_data_is_one_clear_line_and_leaves_nothing(tmp_path, capsys, case, message):
    y = np.array([0, 1] * 5)
    x = np.zeros((10, 8, 8), np.uint8)
    name = f"npz:{tmp_path / 'd.npz'}"
    if case == "one_class":
        _bars(tmp_path / "f", classes=("only",), per_class=3)
        name = f"folder:{tmp_path / 'f'}"
    elif case == "unreadable":
        _bars(tmp_path / "f", per_class=3)
        (tmp_path / "f" / "vertical" / "broken.png").write_bytes(b"not a png")
        name = f"folder:{tmp_path / 'f'}"
    elif case == "no_y_test":
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x)
    elif case == "negative_label":
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y - 1, x_test=x, y_test=y)
    elif case == "unseen_test_label":
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y * 5)
    with pytest.raises(SettingError) as error:
        data.load(name)
    assert error.value.setting == "dataset"
    out = tmp_path / "run"
    assert main(["train", "--dataset", name, *QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error: argument --dataset") and message in err[0], err
    assert not out.exists()


def test_image_size_is_for_own_data_sets_only():
    with pytest.raises(SettingError, match="image_size applies to folder: and npz:"):
        data.load("digits", image_size=16)


@pytest.mark.parametrize("command", ["train", "import"])
def test_a_built_in_model_on_images_of_another_size_is_one_line_suggesting_image_size(tmp_path, capsys, command):
    """lenet5 on 28x28 npz images: one `neft: error:` line naming --image-size 32, nothing written (train, import)."""
    from neft import models

    x, y = np.zeros((20, 28, 28), np.uint8), np.array([0, 1] * 10)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    name, out = f"npz:{tmp_path / 'd.npz'}", tmp_path / "run"
    if command == "train":
        argv = ["train", "--dataset", name, *QUICK, "--out", str(out)]
    else:
        torch.save(models.create("lenet5", 2, 1).state_dict(), tmp_path / "w.pt")
        argv = ["import", "--model", "lenet5", "--weights", str(tmp_path / "w.pt"), "--dataset", name,
                "--normalisation", "dataset", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error: argument --model: 'lenet5' fails on a batch"), err
    assert err[0].endswith(f"the images of {name} are 28x28: resize them to the 32x32 the built-in models take "
                           "with image_size=32 (--image-size 32)"), err
    assert not out.exists()
    assert main([*argv, "--image-size", "32"]) == 0 and (out / "checkpoint.pt").is_file()
