"""Case 2's data sources on small data the tests write themselves: CIFAR-format batch files,
an image folder, the download (with the network replaced: no test touches it), and the
synthetic stand-in. Oracles: torchvision's own CIFAR10 + ToTensor(), and PIL."""

import hashlib
import io
import pickle
import tarfile
import threading
import time
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from core.cases.cifar import cache as cifar_cache
from core.cases.cifar import data as cifar_data
from core.cases.cifar import synthetic
from core.settings import SettingError

CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No network in any test here, a fresh cache folder, no remembered failures or sets."""

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(cifar_data.urllib.request, "urlopen", no_network)
    monkeypatch.setenv(cifar_data.DATA_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("CLINIC_ALLOWED_ROOTS", str(tmp_path))  # the files these tests write may be read
    cifar_data.forget_download_failures()
    cifar_cache.CACHE.clear()
    yield
    cifar_data.forget_download_failures()
    cifar_cache.CACHE.clear()


def cifar_files(folder, n_per_batch=6, n_test=8, seed=0):
    """CIFAR-10's python format written by hand: pickled dicts with 'data' (N, 3072) uint8
    rows (1024 red, 1024 green, 1024 blue values, each image row by row) and 'labels'."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows, labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch).tolist()
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps({"data": data, "labels": y}))
        rows.append(data)
        labels += y
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_y = rng.integers(0, 10, n_test).tolist()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": test, "labels": test_y}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CLASSES}))
    return np.concatenate(rows), np.array(labels), test, np.array(test_y)


CPU = torch.device("cpu")


def test_cifar_format_files_load_as_the_posted_pipeline_sees_them(tmp_path, monkeypatch):
    train, train_y, test, test_y = cifar_files(tmp_path / "cifar-10-batches-py")
    images = cifar_cache.load("cifar10", str(tmp_path), CPU)
    assert images.source == "cifar10" and images.classes == tuple(CLASSES)
    assert images.train_x.dtype == torch.uint8 and images.train_x.shape == (30, 3072)
    np.testing.assert_array_equal(images.train_x.numpy(), train)
    np.testing.assert_array_equal(images.train_y.numpy(), train_y)
    np.testing.assert_array_equal(images.test_x.numpy(), test)
    np.testing.assert_array_equal(images.test_y.numpy(), test_y)

    # the oracle: torchvision's CIFAR10 (checksums switched off for these files) + ToTensor()
    import torchvision
    from torchvision import transforms

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    posted = torchvision.datasets.CIFAR10(str(tmp_path), train=True, transform=transforms.ToTensor())
    for i in (0, 7, 29):
        x, y = posted[i]  # (3, 32, 32) floats in [0, 1]
        flat = x.reshape(-1)  # what the post's x.reshape(250, -1) gives, one row
        torch.testing.assert_close(images.train_x[i].float() / 255, flat, rtol=0, atol=0)
        assert images.train_y[i] == y


def test_cifar_on_disk_is_read_without_any_download(tmp_path):
    cifar_files(tmp_path / "cache" / "cifar-10-batches-py")  # the default root ($CLINIC_DATA_DIR)
    assert cifar_data.cifar10_on_disk("")
    images = cifar_cache.load("cifar10", "", CPU)  # urlopen would raise
    assert len(images.train_y) == 30


def test_unreadable_cifar_files_name_the_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    cifar_files(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(SettingError) as e:
        cifar_cache.load("cifar10", str(tmp_path), CPU)
    assert str(e.value).startswith("data_root: cannot read the CIFAR-10 files in ")


def test_a_failed_download_fails_fast_with_a_clear_message_and_is_remembered(tmp_path, monkeypatch):
    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(cifar_data.urllib.request, "urlopen", no_network)
    start = time.monotonic()
    with pytest.raises(SettingError) as e:
        cifar_cache.load("cifar10", "", CPU)  # "": the data folder, the one place downloads go
    assert time.monotonic() - start < 5
    message = str(e.value)
    cache = tmp_path / "cache"
    assert message.startswith(f"dataset: CIFAR-10 is not in {cache}/cifar-10-batches-py and cannot be downloaded")
    assert "Name or service not known" in message and "dataset = synthetic" in message
    assert calls and calls[0][0] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert "Name or service not known" in cifar_data.download_failure("")
    # remembered: the next ask fails at once, without another attempt
    with pytest.raises(SettingError):
        cifar_data.download_cifar10("")
    assert len(calls) == 1
    cifar_data.forget_download_failures()
    with pytest.raises(SettingError):
        cifar_data.download_cifar10("")
    assert len(calls) == 2
    assert not list(cache.glob("*.part"))


def test_the_retry_clock_does_not_start_at_boot(monkeypatch):
    """time.monotonic() counts from boot: on a machine up for 5 minutes, 'no failure yet' must
    not read as 'a failure 5 minutes ago' (it hid CIFAR-10 for the first 10 minutes)."""
    monkeypatch.setattr(cifar_data.time, "monotonic", lambda: 300.0)
    assert cifar_data.download_failure("") is None
    with pytest.raises(SettingError):
        cifar_data.download_cifar10("")  # the network is off in these tests: a failure, remembered
    assert cifar_data.download_failure("") == "network disabled in tests"
    monkeypatch.setattr(cifar_data.time, "monotonic", lambda: 300.0 + cifar_data.RETRY_AFTER_S + 1)
    assert cifar_data.download_failure("") is None


def test_downloads_go_only_into_the_data_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cifar_data.urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    for root in (tmp_path / "elsewhere" / "new", tmp_path / "cache" / ".." / "x"):
        with pytest.raises(SettingError, match="downloaded only into the data folder"):
            cifar_data.download_cifar10(str(root))
        assert not root.exists()
    assert not calls and not (tmp_path / "elsewhere").exists()


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def archive_of(folder) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_downloads_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv(cifar_data.OFFLINE_ENV, "1")
    assert cifar_data.download_failure("") == "downloads are off: CLINIC_OFFLINE=1"
    with pytest.raises(SettingError, match=r"cannot be downloaded \(downloads are off: CLINIC_OFFLINE=1\)"):
        cifar_cache.load("cifar10", "", CPU)


def test_a_download_is_checked_unpacked_and_reported(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    train, *_ = cifar_files(tmp_path / "source" / "cifar-10-batches-py")
    payload = archive_of(tmp_path / "source" / "cifar-10-batches-py")
    monkeypatch.setattr(cifar_data.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(payload).hexdigest())
    seen = []
    root = tmp_path / "cache"  # the data folder, created by the download
    cifar_data.download_cifar10("", lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(payload), len(payload))
    assert cifar_data.cifar10_on_disk("") and not list(root.glob("*.tar.gz"))
    np.testing.assert_array_equal(cifar_cache.load("cifar10", "", CPU).train_x.numpy(), train)


def test_a_corrupted_download_is_refused(tmp_path, monkeypatch):
    cifar_files(tmp_path / "source" / "cifar-10-batches-py")
    payload = archive_of(tmp_path / "source" / "cifar-10-batches-py")
    monkeypatch.setattr(cifar_data.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    with pytest.raises(SettingError) as e:  # torchvision's real MD5 does not match this archive
        cifar_data.download_cifar10("")
    assert "MD5" in str(e.value) and "broken download" in str(e.value)
    assert not cifar_data.cifar10_on_disk("")


# ---------------------------------------------------------------------------- folder


def save(path, size=(40, 30), mode="RGB", colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode != "L" else 128).save(path)


def image_folder(root, classes=("cat", "dog"), per_class=3):
    for split in ("train", "test"):
        for c in classes:
            for i in range(per_class):
                save(root / split / c / f"{i}.png", colour=(40 * i, 100, 200 if c == "dog" else 10))


def test_a_folder_of_images_loads_resized_to_32x32_rgb(tmp_path):
    image_folder(tmp_path)
    save(tmp_path / "train" / "cat" / "gray.png", size=(64, 64), mode="L")
    save(tmp_path / "train" / "dog" / "alpha.png", size=(16, 20), mode="RGBA", colour=(1, 2, 3, 4))
    images = cifar_cache.load("folder", str(tmp_path), CPU)
    assert images.source == "folder" and images.classes == ("cat", "dog")
    assert images.train_x.shape == (8, 3072) and images.test_x.shape == (6, 3072)
    assert images.train_x.dtype == torch.uint8
    assert images.train_y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # the oracle: PIL's own RGB conversion and 32x32 resize, in ToTensor's channel order
    for i, path in enumerate(sorted((tmp_path / "train" / "cat").iterdir())):
        expected = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(images.train_x[i].view(3, 32, 32).permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize(
    ("make", "root", "message"),
    [
        (lambda p: None, "", "data_root: give the folder that holds train/<class>/… and test/<class>/… images"),
        (lambda p: None, "missing", "data_root: {root} is not a folder"),
        (lambda p: save(p / "train" / "a" / "0.png"), ".", "data_root: {root} has no test/ folder; expected"),
        (lambda p: p.mkdir(exist_ok=True), ".", "data_root: {root} has no train/ and no test/ folder"),
        (
            lambda p: (image_folder(p), (p / "train" / "cat" / "bad.png").write_bytes(b"no image")),
            ".",
            "data_root: cannot read 1 image(s): train/cat/bad.png (UnidentifiedImageError)",
        ),
        (
            lambda p: (image_folder(p), save(p / "train" / "cow" / "0.png")),
            ".",
            "data_root: train/ and test/ must hold the same class folders; only in train/: cow; only in test/: none",
        ),
        (lambda p: ((p / "train").mkdir(), (p / "test").mkdir()), ".", "data_root: no images (.jpg"),
        (lambda p: image_folder(p, classes=("cat",)), ".", "data_root: needs at least 2 class folders in train/"),
    ],
)
def test_a_bad_folder_gets_a_clear_message(tmp_path, make, root, message):
    base = tmp_path / "images"
    base.mkdir()
    make(base)
    data_root = "" if root == "" else str(base / root) if root != "." else str(base)
    with pytest.raises(SettingError) as e:
        cifar_cache.load("folder", data_root, CPU)
    assert str(e.value).startswith(message.format(root=data_root)), str(e.value)


# ---------------------------------------------------------------------------- synthetic stand-in and cache


def test_the_stand_in_is_balanced_uint8_and_its_own_generator_makes_it():
    x, y = synthetic.synthetic(2000, seed=3)
    assert x.dtype == torch.uint8 and x.shape == (2000, 3072)
    assert torch.bincount(y, minlength=10).tolist() == [200] * 10
    x2, y2 = synthetic.synthetic(2000, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(synthetic.synthetic(2000, seed=4)[0], x)
    # CIFAR-like statistics: pixels spread over the range, not centred
    mean, std = x.float().mean().item() / 255, x.float().std().item() / 255
    assert 0.35 < mean < 0.6 and 0.15 < std < 0.35
    # each class looks different on average (the colour cue is learnable)...
    means = torch.stack([x[y == c].float().mean(0) for c in range(10)])
    assert torch.cdist(means, means).fill_diagonal_(1e9).min() > 50
    # ...but one image is far from its class mean (not trivially separable)
    spread = (x[y == 0].float() - means[0]).norm(dim=1).mean()
    assert spread > torch.cdist(means, means).fill_diagonal_(0).mean()


def test_the_stand_in_is_labelled_and_the_same_object_for_every_run():
    a = cifar_cache.load("synthetic", "", CPU)
    b = cifar_cache.load("synthetic", "ignored", CPU)
    assert a is b and a.source == "synthetic stand-in" and a.classes == synthetic.SYNTHETIC_CLASSES
    assert a.train_x.shape == (50_000, 3072) and a.test_x.shape == (10_000, 3072)


def test_the_data_cache_loads_once_per_key_under_concurrency_and_stays_bounded():
    def images(tag):  # 10 images of 3072 bytes: 30,880 bytes with labels
        x, y = torch.zeros(10, 3072, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64)
        return cifar_data.Images(x, y, x[:0], y[:0], ("a", "b"), tag, "")

    size = cifar_cache.images_bytes(images("k"))
    cache = cifar_cache.DataCache(max_bytes=2 * size)  # room for two sets
    made = []

    def make(tag):
        def build():
            made.append(tag)
            time.sleep(0.05)
            return images(tag)

        return build

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(("k",), make("k")))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == ["k"] and [g.source for g in got] == ["k"] * 4 and all(g is got[0] for g in got)
    cache.get(("a",), make("a"))
    cache.get(("b",), make("b"))
    assert len(cache) == 2
    cache.get(("k",), make("k"))  # evicted, so made again
    assert made == ["k", "a", "b", "k"]
    big = cifar_cache.DataCache(max_bytes=size - 1)  # a set larger than the bound: returned, not kept
    assert big.get(("k",), make("k")).source == "k" and len(big) == 0


def test_unknown_source_is_refused():
    with pytest.raises(SettingError, match="dataset: must be one of cifar10, folder, synthetic"):
        cifar_cache.load("imagenet", "", CPU)


@pytest.mark.parametrize("source", ["cifar10", "folder"])
def test_the_exported_script_reads_cifar_files_and_folders_as_the_app_does(source, tmp_path):
    """The standalone script's own readers (pickled batches; ImageFolder) give the app's metrics."""
    import json
    import subprocess
    import sys

    from core import export, registry, runner

    if source == "cifar10":
        cifar_files(tmp_path / "data" / cifar_data.CIFAR10_FOLDER, n_per_batch=40, n_test=50)
    else:
        image_folder(tmp_path / "data", classes=("cat", "dog", "fox"), per_class=12)
    case = registry.get("cifar")
    config = case.configure("fixed", {"dataset": source, "data_root": str(tmp_path / "data"), "batch_size": "16",
                                      "epochs": "3", "hidden": "20"})  # fmt: skip
    script = tmp_path / "repro.py"
    script.write_text(export.script(case, config))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    app = runner.execute(case, config, CPU).metrics
    assert printed["dataset"] == app["dataset"] == source and printed["train_size"] == app["train_size"]
    for key in ("test_accuracy", "train_accuracy", "final_loss", "dead_relu_fraction", "steps_run"):
        assert printed[key] == pytest.approx(app[key], rel=1e-4, abs=1e-6), key
