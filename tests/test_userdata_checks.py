"""Data sets of your own kept as they are (neft.data.own; docs/method.md, 'Data sets of your own'): images of any
bit depth keep their range, a folder or npz that cannot be read without guessing is refused, and the class names
recorded at training are checked when a run is evaluated, resumed or its weights imported."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from neft import data, models
from neft.cli.main import main
from neft.common.errors import SettingError
from neft.runs import evaluate_run, import_run

QUICK = ["--model", "lenet5", "--init", "torch", "--epochs", "1", "--val-runs", "2", "--sigma", "0.1", "--quiet",
         "--lr", "0.01", "--batch-size", "16"]


def _save(array: np.ndarray, path, mode: str | None = None) -> None:
    """Save ``array`` with Pillow (in ``mode`` when given, e.g. "I;16B" for big-endian 16-bit)."""
    image = Image.fromarray(array)
    if mode == "I;16B":
        image = Image.fromarray(array.astype(">u2"))
    image.save(path)


# (file suffix, Pillow mode written, numpy type, the value of full brightness in the docs)
DEPTHS = {
    "png16": (".png", None, np.uint16, 65535),
    "tiff16-big-endian": (".tif", "I;16B", np.uint16, 65535),
    "tiff32-int": (".tif", None, np.int32, 2**31 - 1),
    "tiff-float": (".tif", None, np.float32, 1.0),
}


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_deep_images_keep_their_range(tmp_path, depth):
    suffix, mode, dtype, full = DEPTHS[depth]
    values = {"dark": [300, 1000, 5000], "bright": [20000, 40000, 60000]}  # all above 255, all different
    if dtype == np.float32:
        values = {"dark": [0.05, 0.1, 0.2], "bright": [0.5, 0.75, 0.9]}
    for name, levels in values.items():
        (tmp_path / "f" / name).mkdir(parents=True)
        for i, level in enumerate(levels):
            _save(np.full((6, 10), level, dtype), tmp_path / "f" / name / f"{i}{suffix}", mode)
    dataset = data.load(f"folder:{tmp_path / 'f'}", image_size=4)
    images = torch.cat([dataset.splits["train"][0], dataset.splits["test"][0]])
    assert images.dtype == torch.float32 and images.shape == (6, 1, 4, 4)
    per_image = sorted(float(image.mean()) for image in images)
    expected = sorted(level / full for levels in values.values() for level in levels)
    assert per_image == pytest.approx(expected, rel=1e-5)  # scaled, never clipped to 8 bits
    assert all(float(image.max() - image.min()) <= 1e-6 * float(image.max()) for image in images)  # flat images
    x = dataset.preprocess(dataset.splits["train"][0])
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4) and float(x.std(unbiased=False)) == pytest.approx(1.0, 1e-3)


def test_eight_bit_folders_stay_uint8_beside_a_deep_image_they_become_floats(tmp_path):
    for name, level in (("a", 10), ("b", 200)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(3):
            _save(np.full((5, 5), level + i, np.uint8), tmp_path / "f" / name / f"{i}.png")
    eight = data.load(f"folder:{tmp_path / 'f'}", image_size=5)
    assert eight.splits["train"][0].dtype == torch.uint8
    _save(np.full((5, 5), 65535, np.uint16), tmp_path / "f" / "b" / "deep.png")
    mixed = data.load(f"folder:{tmp_path / 'f'}", image_size=5)
    values = sorted(float(v) for v in torch.cat([mixed.splits["train"][0], mixed.splits["test"][0]]).unique())
    assert values == pytest.approx(sorted([(10 + i) / 255 for i in range(3)] + [(200 + i) / 255 for i in range(3)]
                                          + [1.0]))


def test_float_and_integer_images_in_one_folder_are_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "f" / name).mkdir(parents=True)
        _save(np.full((5, 5), 7, np.uint8), tmp_path / "f" / name / "0.png")
    _save(np.full((5, 5), 0.5, np.float32), tmp_path / "f" / "b" / "1.tif")
    with pytest.raises(SettingError, match=r"float.*1\.tif.*integer"):
        data.load(f"folder:{tmp_path / 'f'}")


def test_a_sixteen_bit_folder_trains_well_above_chance(tmp_path):
    """Today's clipping made every image white: chance (50 %) with exit 0."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("horizontal", "vertical")):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(40):
            image = rng.integers(1000, 20000, (24, 24)).astype(np.uint16)
            if k == 0:
                image[::4] = 65535
            else:
                image[:, ::4] = 65535
            _save(image, tmp_path / "f" / name / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{tmp_path / 'f'}", *QUICK, "--epochs", "3", "--out", str(run)]) == 0
    assert main(["evaluate", str(run), "--runs", "2", "--sigmas", "0", "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["per_sigma"][0]["accuracy"]["mean"] >= 80.0


@pytest.mark.parametrize("dtype, full", [(np.uint16, 65535), (np.int32, 2**31 - 1), (np.int16, 2**15 - 1)])
def test_npz_integer_images_are_scaled_by_their_type(tmp_path, dtype, full):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4096, (20, 6, 6)).astype(dtype)  # 12-bit content
    y = np.arange(20) % 2
    np.savez(tmp_path / "d.npz", x_train=x[:14], y_train=y[:14], x_test=x[14:], y_test=y[14:])
    dataset = data.load(f"npz:{tmp_path / 'd.npz'}")
    train = dataset.splits["train"][0]
    assert train.dtype == torch.float32
    assert torch.allclose(train[:, 0], torch.from_numpy((x[:14] / full).astype(np.float32)))
    assert dataset.mean[0] == pytest.approx(float(x[:14].mean()) / full, rel=1e-6)
    assert dataset.std[0] == pytest.approx(float(x[:14].std()) / full, rel=1e-6)  # not clamped at 1e-6


@pytest.mark.parametrize("shape", [(10, 3, 32, 3), (10, 4, 4, 4), (10, 16, 16, 8)])
def test_npz_with_an_ambiguous_channel_axis_is_refused(tmp_path, shape):
    x = np.zeros(shape, np.uint8)
    y = np.arange(10) % 2
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(SettingError, match=r"channel axis is ambiguous.*\[N, C, H, W\].*\[N, H, W, C\]"):
        data.load(f"npz:{tmp_path / 'd.npz'}")


def test_npz_channels_where_they_can_be_told(tmp_path):
    y = np.arange(10) % 2
    for shape, channels in (((10, 32, 32, 3), 3), ((10, 3, 32, 32), 3), ((10, 8, 16, 16), 8), ((10, 20, 6, 1), 1),
                            ((10, 5, 3), 1)):
        x = np.zeros(shape, np.uint8)
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
        assert data.load(f"npz:{tmp_path / 'd.npz'}").in_channels == channels, shape


def test_a_label_far_above_the_others_is_named(tmp_path):
    x = np.zeros((22, 8, 8), np.uint8)
    y = np.r_[np.arange(20) % 10, 1000, 3]
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    with pytest.raises(SettingError, match=r"1000 \(1 image\).*10 \.\. 999") as error:
        data.load(f"npz:{tmp_path / 'd.npz'}")
    assert "classes" in str(error.value)  # how to say it is intended
    names = np.array([f"c{k}" for k in range(1001)])
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y, classes=names)  # every class tested
    dataset = data.load(f"npz:{tmp_path / 'd.npz'}")
    assert dataset.num_classes == 1001 and dataset.classes[1000] == "c1000"


def test_npz_labels_beyond_its_class_names_are_refused(tmp_path):
    x = np.zeros((10, 8, 8), np.uint8)
    y = np.arange(10) % 3
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y, classes=np.array(["a", "b"]))
    with pytest.raises(SettingError, match=r"labels reach 2 but classes has 2 names \(labels 0 \.\. 1\)"):
        data.load(f"npz:{tmp_path / 'd.npz'}")


def test_float_images_outside_zero_to_one_are_refused(tmp_path, capsys):
    # every kind of image reaches the network in [0, 1]; `--normalisation none` and a given mean/std assume it
    for name, level in (("a", 0.2), ("b", 1.0004)):  # within the tolerance of [0, 1]: accepted
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(3):
            _save(np.full((5, 5), level, np.float32), tmp_path / "f" / name / f"{i}.tif")
    assert data.load(f"folder:{tmp_path / 'f'}", image_size=5).splits["train"][0].dtype == torch.float32
    _save(np.full((5, 5), 200.0, np.float32), tmp_path / "f" / "b" / "3.tif")
    with pytest.raises(SettingError, match=r"float image .*3\.tif holds float pixels from 200 to 200; .*divide"):
        data.load(f"folder:{tmp_path / 'f'}", image_size=5)
    x = np.linspace(0, 255, 30 * 32 * 32, dtype=np.float32).reshape(30, 32, 32)
    np.savez(tmp_path / "d.npz", x_train=x[:20], y_train=np.arange(20) % 2, x_test=x[20:], y_test=np.arange(10) % 2)
    weights = tmp_path / "w.pt"
    torch.save(models.create("lenet5", 2, 1, 1.0, "torch").state_dict(), weights)
    out = tmp_path / "run"
    assert main(["import", "--model", "lenet5", "--weights", str(weights), "--dataset", f"npz:{tmp_path / 'd.npz'}",
                 "--normalisation", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error:") and "divide 0..255 pixels by 255" in err[0], err
    assert not out.exists()


def _folder(root, classes=("cats", "dogs"), per_class=20):
    """One class of images per brightness: a network learns it in one epoch."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _save((rng.integers(0, 50, (8, 8)) + 200 * k // max(1, len(classes) - 1)).astype(np.uint8),
                  root / name / f"{i}.png")


@pytest.mark.parametrize("content", ["nothing", "a text file"])
def test_an_empty_class_folder_is_refused_by_name(tmp_path, capsys, content):
    _folder(tmp_path / "f")
    (tmp_path / "f" / "birds").mkdir()
    if content != "nothing":
        (tmp_path / "f" / "birds" / "notes.txt").write_text("no image")
    with pytest.raises(SettingError, match=r"class folder 'birds'.* no image"):
        data.load(f"folder:{tmp_path / 'f'}")
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{tmp_path / 'f'}", *QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error: argument --dataset") and "'birds'" in err[0]
    assert not out.exists()


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run trained (1 epoch) on a folder of three classes, and the folder."""
    root = tmp_path_factory.mktemp("classes")
    _folder(root / "f", classes=("ants", "bees", "cats"))
    assert main(["train", "--dataset", f"folder:{root / 'f'}", *QUICK, "--sigma", "0", "--out",
                 str(root / "run")]) == 0
    return root / "run", root / "f"


@pytest.mark.parametrize("change, message", [
    ("rename", r"'ants' is missing; 'zebras' is new"),
    ("remove", r"'bees' is missing"),
    ("add", r"'dogs' is new"),
])
def test_evaluation_refuses_classes_other_than_trained(folder_run, tmp_path, capsys, change, message):
    run, folder = folder_run
    changed = tmp_path / "f"
    shutil.copytree(folder, changed)
    if change == "rename":  # sorts last: every label moves, 100 % became 0 %
        (changed / "ants").rename(changed / "zebras")
    elif change == "remove":
        shutil.rmtree(changed / "bees")
    else:
        _folder(tmp_path / "more", classes=("dogs",))
        shutil.copytree(tmp_path / "more" / "dogs", changed / "dogs")
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for path in (copy / "config.json",):  # the run now points at the changed folder
        text = path.read_text().replace(str(folder.resolve()), str(changed.resolve()))
        path.write_text(text)
    checkpoint = torch.load(copy / "checkpoint.pt", weights_only=True)
    checkpoint["dataset"] = f"folder:{changed.resolve()}"
    checkpoint["config"]["dataset"] = checkpoint["dataset"]
    torch.save(checkpoint, copy / "checkpoint.pt")
    with pytest.raises(SettingError, match=r"\['ants', 'bees', 'cats'\].*" + message):
        evaluate_run(copy, runs=2, sigmas=[0.0], progress=False)
    assert main(["evaluate", str(copy), "--runs", "2", "--sigmas", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error:") and "trained" in err[0], err
    assert not (copy / "results.json").exists()



def test_evaluation_refuses_a_folder_whose_own_split_changed(folder_run, tmp_path, capsys):
    """One image added to a class of a folder without train/ and test/ redraws its 80/20 split, so that training
    images would be tested: refused, naming the cause; the folder as it was still evaluates."""
    run, folder = folder_run
    recorded = json.loads((run / "config.json").read_text())["recorded"]["dataset"]["split"]
    assert isinstance(recorded, str) and len(recorded) == 16
    changed = tmp_path / "f"
    shutil.copytree(folder, changed)
    image = sorted((changed / "bees").iterdir())[0]
    shutil.copyfile(image, image.with_name("added" + image.suffix))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace(str(folder.resolve()),
                                                                                 str(changed.resolve())))
    checkpoint = torch.load(copy / "checkpoint.pt", weights_only=True)
    checkpoint["dataset"] = checkpoint["config"]["dataset"] = f"folder:{changed.resolve()}"
    torch.save(checkpoint, copy / "checkpoint.pt")
    assert main(["evaluate", str(copy), "--runs", "2", "--sigmas", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another 80/20 split" in err[0] and not (copy / "results.json").exists()
    (image.with_name("added" + image.suffix)).unlink()  # restored: the split it was trained on
    assert main(["evaluate", str(copy), "--runs", "2", "--sigmas", "0", "--quiet"]) == 0

def test_a_class_missing_from_the_test_split_is_refused(tmp_path, capsys):
    # a test/ split without a class the training split has would leave it out of the accuracy silently
    for split in ("train", "test"):
        _folder(tmp_path / "d" / split, classes=("one", "two", "zero"), per_class=8)
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{tmp_path / 'd'}", *QUICK, "--sigma", "0", "--out", str(run)]) == 0
    shutil.move(tmp_path / "d" / "test" / "two", tmp_path / "two-aside")
    assert main(["evaluate", str(run), "--runs", "2", "--sigmas", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error:") and "no image of class 'two'" in err[0], err
    assert not (run / "results.json").exists()
    fresh = tmp_path / "fresh"  # at training too
    assert main(["train", "--dataset", f"folder:{tmp_path / 'd'}", *QUICK, "--out", str(fresh)]) == 2
    assert "no image of class 'two'" in capsys.readouterr().err and not fresh.exists()
    (tmp_path / "d" / "test" / "two").mkdir()  # an empty folder is no better
    with pytest.raises(SettingError, match="no image of class 'two'"):
        data.load(f"folder:{tmp_path / 'd'}")
    shutil.rmtree(tmp_path / "d" / "test" / "two")
    shutil.move(tmp_path / "two-aside", tmp_path / "d" / "test" / "two")
    shutil.copytree(tmp_path / "d" / "test" / "two", tmp_path / "d" / "test" / "three")
    with pytest.raises(SettingError, match=r"test/ has classes \['three'\] that train/ lacks"):
        data.load(f"folder:{tmp_path / 'd'}")
    x = np.zeros((12, 8, 8), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(12) % 3, x_test=x, y_test=np.arange(12) % 2)
    with pytest.raises(SettingError, match="no image of class label 2"):
        data.load(f"npz:{tmp_path / 'd.npz'}")


def test_old_runs_without_class_names_still_evaluate(folder_run, tmp_path):
    run, _ = folder_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    checkpoint = torch.load(copy / "checkpoint.pt", weights_only=True)
    del checkpoint["dataset_stats"]["classes"]
    torch.save(checkpoint, copy / "checkpoint.pt")
    results = evaluate_run(copy, runs=2, sigmas=[0.0], progress=False)
    assert results["per_sigma"][0]["accuracy"]["mean"] > 0


def test_resume_refuses_renamed_classes(folder_run, tmp_path, capsys):
    run, folder = folder_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    shutil.move(folder / "ants", folder.parent / "ants-aside")
    try:
        (folder / "zebras").mkdir()
        for path in (folder.parent / "ants-aside").iterdir():
            shutil.copy(path, folder / "zebras" / path.name)
        assert main(["train", "--resume", "--out", str(moved), "--quiet"]) == 2
    finally:
        shutil.rmtree(folder / "zebras", ignore_errors=True)
        shutil.move(folder.parent / "ants-aside", folder / "ants")
    assert "'ants' is missing; 'zebras' is new" in capsys.readouterr().err


def test_import_checks_the_class_names_the_weights_carry(tmp_path, capsys):
    _folder(tmp_path / "f")
    network = models.create("lenet5", 2, 1, 1.0, "torch")
    for names, accepted in ((["cats", "dogs"], True), (["dogs", "cats"], False)):
        weights = tmp_path / "w.pt"
        torch.save({"state_dict": network.state_dict(), "classes": names}, weights)
        out = tmp_path / f"run-{accepted}"
        if accepted:
            import_run("lenet5", weights, f"folder:{tmp_path / 'f'}", out)
            recorded = json.loads((out / "config.json").read_text())["recorded"]["dataset"]
            assert recorded["classes"] == ["cats", "dogs"]
            continue
        assert main(["import", "--model", "lenet5", "--weights", str(weights), "--dataset",
                     f"folder:{tmp_path / 'f'}", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "same names in another order" in err and "label 0" in err and not out.exists()
    torch.save({"model": network.state_dict(), "class_to_idx": {"dogs": 0, "cats": 1}}, tmp_path / "w.pt")
    with pytest.raises(SettingError, match="another order"):
        import_run("lenet5", tmp_path / "w.pt", f"folder:{tmp_path / 'f'}", tmp_path / "run-3")


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((10, 4, 4, 4), np.uint8), np.arange(10) % 2, "channel axis is ambiguous"),
    (np.zeros((10, 8, 8), np.uint8), np.r_[np.arange(9) % 2, 1000], "the largest training label, 1000 (1 image)"),
    (np.zeros((10, 8, 8), np.bool_), np.arange(10) % 2, "x_train is bool; give integer pixels"),
    (np.linspace(0, 255, 640, dtype=np.float32).reshape(10, 8, 8), np.arange(10) % 2,
     "x_train holds float pixels from 0 to 255; float images must lie in [0, 1]: divide 0..255 pixels by 255"),
    (np.linspace(-2, 2, 640).reshape(10, 8, 8), np.arange(10) % 2,
     "x_train holds float pixels from -2 to 2; float images must lie in [0, 1]: scale them to [0, 1]"),
])
def test_npz_refusals_are_one_line_before_any_work(tmp_path, capsys, x, y, message):
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y % 2)
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{tmp_path / 'd.npz'}", *QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neft: error: argument --dataset") and message in err[0], err
    assert not out.exists()
