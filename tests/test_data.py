"""Data sets and preprocessing (docs/method.md, 'Data sets and preprocessing'): real Fashion-MNIST and mnist-5k,
synthetic files in every format."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from neft.data import DatasetNotFoundError, formats
from neft.data import datasets as data

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("NEFT_DATA", raising=False)


@pytest.fixture(scope="module")
def fashion():
    if not FASHION.is_dir():
        pytest.skip(f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
    return data.load("fashion-mnist")


@pytest.fixture(scope="module")
def mnist5k():
    return data.load("mnist-5k")


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    (gzip.open if compress else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


def _random_images(rng, n, c, side):
    return rng.integers(0, 256, (n, c, side, side), dtype=np.uint8)


def test_fashion_mnist_real_counts(fashion):
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = fashion.splits[split]
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    assert (fashion.in_channels, fashion.num_classes, fashion.image_size, fashion.augment) == (1, 10, 32, False)


def test_mnist_5k_real_digits_and_deterministic(mnist5k):
    assert (mnist5k.size("train"), mnist5k.size("test")) == (4000, 1000)
    for split in ("train", "test"):
        images, labels = mnist5k.splits[split]
        assert images.shape[1:] == (1, 28, 28) and images.dtype == torch.uint8
        assert set(labels.tolist()) == set(range(10))
        assert 20 < images.float().mean() < 60  # MNIST mean pixel is ~33; mostly black background
        assert images.max() > 200 and images.float().std() > 50
    again = data.load("MNIST5K", seed=7)  # the fixed split does not depend on seed
    for split in ("train", "test"):
        assert all(torch.equal(a, b) for a, b in zip(mnist5k.splits[split], again.splits[split]))


def test_digits_sizes_and_scale():
    pytest.importorskip("sklearn")
    digits = data.load("digits")
    assert (digits.size("train"), digits.size("test")) == (1437, 360)
    images = digits.splits["train"][0]
    assert images.shape[1:] == (1, 8, 8) and images.max() == 255 and images.min() == 0
    x, _ = next(digits.batches("test", 5))
    assert x.shape == (5, 1, 32, 32)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    arrays = {"train": (_random_images(rng, 12, 1, 28)[:, 0], rng.integers(0, 10, 12)),
              "t10k": (_random_images(rng, 5, 1, 28)[:, 0], rng.integers(0, 10, 5))}
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    suffix = ".gz" if compress else ""
    for prefix, (images, labels) in arrays.items():
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    ds = data.load("mnist", tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = ds.splits[split]
        assert np.array_equal(images[:, 0].numpy(), arrays[prefix][0])
        assert np.array_equal(labels.numpy(), arrays[prefix][1])


def test_corrupt_idx_is_a_clear_error(tmp_path):
    for name in formats._IDX_FILES:
        _write_idx(tmp_path / name, np.zeros((2, 28, 28) if "images" in name else (2,)), False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)  # truncated
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        data.load("mnist", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + b"\x00" * 20)  # bad magic
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load("mnist", tmp_path)


def _pickle(path, **fields):
    path.write_bytes(pickle.dumps({key.encode(): value for key, value in fields.items()}))


def test_cifar10_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [(rng.integers(0, 256, (4, 3072), dtype=np.uint8), rng.integers(0, 10, 4).tolist()) for _ in range(6)]
    for name, (images, labels) in zip([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], batches):
        _pickle(folder / name, data=images, labels=labels)
    ds = data.load("CIFAR10", tmp_path)
    train_images, train_labels = ds.splits["train"]
    assert train_images.shape == (20, 3, 32, 32) and ds.in_channels == 3 and ds.augment
    assert np.array_equal(train_images.reshape(20, 3072).numpy(), np.concatenate([b[0] for b in batches[:5]]))
    assert train_labels.tolist() == sum((b[1] for b in batches[:5]), [])
    assert np.array_equal(ds.splits["test"][0].reshape(4, 3072).numpy(), batches[5][0])
    assert ds.splits["test"][1].tolist() == batches[5][1]


def test_cifar100_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    splits = {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 100, n).tolist())
              for name, n in (("train", 7), ("test", 3))}
    for name, (images, labels) in splits.items():
        _pickle(folder / name, data=images, fine_labels=labels, coarse_labels=[0] * len(labels))
    ds = data.load("cifar100", folder)  # the folder itself also works as data_dir
    assert ds.num_classes == 100
    for name, (images, labels) in splits.items():
        assert np.array_equal(ds.splits[name][0].reshape(-1, 3072).numpy(), images)
        assert ds.splits[name][1].tolist() == labels


def test_tiny_imagenet_folder(tmp_path, monkeypatch):
    image_module = pytest.importorskip("PIL.Image")
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    colours = {"n01443537": (250, 0, 0), "n01629819": (0, 0, 250)}  # flat colours survive JPEG compression
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        for k in range(3):
            image_module.new("RGB", (64, 64), colours[wnid]).save(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG")
    val = [("val_0.JPEG", wnids[1]), ("val_1.JPEG", wnids[0])]
    for file, wnid in val:
        image_module.new("RGB", (64, 64), colours[wnid]).save(root / "val" / "images" / file)
    (root / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in val))
    monkeypatch.setenv("NEFT_DATA", str(tmp_path))
    ds = data.load("tiny_imagenet")
    assert (ds.num_classes, ds.image_size, ds.in_channels) == (200, 64, 3)
    images, labels = ds.splits["train"]
    assert images.shape == (6, 3, 64, 64) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.splits["test"][1].tolist() == [1, 0]
    red = images[:, 0].float().mean((1, 2)) > images[:, 2].float().mean((1, 2))
    assert red.tolist() == [True] * 3 + [False] * 3
    x, _ = next(ds.batches("train", 4, train=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 64, 64)


def _mnist_like(n=10, side=28, augment=False):
    images = torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % 10
    return data.ImageDataset("mnist", 10, (0.5,), (0.5,), 32, augment, {"train": (images, labels),
                                                                         "test": (images, labels)})


def test_preprocess_known_values():
    ds = _mnist_like()
    x = ds.preprocess(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 28, 28))
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.tensor(-1.0)) and torch.allclose(x[1], torch.tensor(1.0))
    same = data.ImageDataset("x", 10, (0.5,), (0.5,), 28, False, ds.splits)  # no resize when already at size
    assert torch.allclose(same.preprocess(ds.splits["train"][0]), ds.splits["train"][0] / 127.5 - 1)


def test_cifar_normalisation_per_channel():
    ds = data.ImageDataset("cifar10", 10, (0.491, 0.482, 0.446), (0.247, 0.243, 0.261), 32, True, {})
    x = ds.preprocess(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8))
    expected = [(1 - m) / s for m, s in zip(ds.mean, ds.std)]
    assert torch.allclose(x[0, :, 5, 5], torch.tensor(expected))


def test_augmentation_reproducible_and_changes_images():
    ds = _mnist_like(n=16, side=32, augment=True)
    images = ds.splits["train"][0]
    plain = ds.preprocess(images)
    a = ds.preprocess(images, train=True, generator=torch.Generator().manual_seed(3))
    b = ds.preprocess(images, train=True, generator=torch.Generator().manual_seed(3))
    assert a.shape == plain.shape == (16, 1, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, plain)
    assert torch.equal(ds.preprocess(images, train=False, generator=torch.Generator().manual_seed(3)), plain)
    assert torch.equal(_mnist_like(augment=False).preprocess(images, train=True), plain)  # MNIST: never augmented


def test_crop_flip_offsets():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    four, zero = torch.tensor([4, 4]), torch.tensor([0, 0])
    no, yes = torch.tensor([False, False]), torch.tensor([True, True])
    assert torch.equal(data._crop_flip(x, four, four, no), x)
    assert torch.equal(data._crop_flip(x, four, four, yes), x.flip(-1))
    shifted = data._crop_flip(x, zero, torch.tensor([4, 8]), no)  # 4 rows of zero padding on top
    assert torch.equal(shifted[:, :, :4], torch.zeros(2, 3, 4, 8)) and torch.equal(shifted[0, :, 4:], x[0, :, :4])
    assert (torch.equal(shifted[1, :, 4:, :4], x[1, :, :4, 4:])
            and torch.equal(shifted[1, :, :, 4:], torch.zeros(3, 8, 4)))


def test_batches_cover_each_image_once():
    ds = _mnist_like(n=23)
    ds.splits["train"] = (ds.splits["train"][0], torch.arange(23))  # labels as image ids
    epoch = list(ds.batches("train", 5, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert [len(y) for _, y in epoch] == [5, 5, 5, 5, 3]
    order = torch.cat([y for _, y in epoch])
    assert sorted(order.tolist()) == list(range(23)) and order.tolist() != list(range(23))
    again = torch.cat([y for _, y in ds.batches("train", 5, shuffle=True, generator=torch.Generator().manual_seed(1))])
    assert torch.equal(order, again)
    x, y = epoch[0]
    assert x.shape == (5, 1, 32, 32) and torch.equal(x, ds.preprocess(ds.splits["train"][0][y]))
    assert torch.cat([y for _, y in ds.batches("train", 10)]).tolist() == list(range(23))


def test_validation_and_subsets(mnist5k):
    ds = data.load("mnist-5k", validation=500, seed=3, train_subset=1000, test_subset=200)
    assert (ds.size("val"), ds.size("train"), ds.size("test")) == (500, 1000, 200)
    flat = {split: {bytes(image.numpy()) for image in ds.splits[split][0]} for split in ("val", "train")}
    assert not flat["val"] & flat["train"]
    assert {bytes(image.numpy()) for image in mnist5k.splits["train"][0]} >= flat["val"] | flat["train"]
    full = data.load("mnist-5k", validation=500, seed=3)
    assert (full.size("train"), full.size("test")) == (3500, 1000)
    assert torch.equal(full.splits["val"][1], ds.splits["val"][1])
    assert not torch.equal(data.load("mnist-5k", validation=500, seed=4).splits["val"][1], ds.splits["val"][1])
    with pytest.raises(ValueError, match="no split 'val'"):
        mnist5k.size("val")


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="cifar10"):
        data.load("imagenet")
    with pytest.raises(DatasetNotFoundError, match="data_batch_1") as error:
        data.load("cifar10", tmp_path)
    assert str(tmp_path) in str(error.value) and "NEFT_DATA" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", tmp_path)
    with pytest.raises(ValueError, match="lower validation"):
        data.load("mnist-5k", validation=4000)
    with pytest.raises(ValueError, match="test_subset"):
        data.load("mnist-5k", test_subset=0)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(folder / "train", data=np.zeros((2, 3072), np.uint8), fine_labels=[0, 1])
    _pickle(folder / "test", data=np.zeros((0, 3072), np.uint8), fine_labels=[])
    with pytest.raises(ValueError, match="test set of cifar100 is empty"):
        data.load("cifar100", tmp_path)
