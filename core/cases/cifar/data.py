"""Case 2's images from three sources, one loader path: CIFAR-10, a folder of your own
images, or a synthetic stand-in made in code.

Whatever the source, the result is an `Images`: the training and test images held once
as uint8 tensors (N, 3072) on the device, in the order that `ToTensor()` followed by the
post's `x.reshape(250, -1)` gives (the red plane, then green, then blue, each row by row),
with labels and class names. Training converts them to float one batch at a time; no
float copy of the whole set is ever made. This module finds, downloads and reads CIFAR-10
and image folders; synthetic.py makes the stand-in; cache.py keeps loaded sets once per process.

torchvision is imported only by the functions that read CIFAR-10 or a folder, so that
`import core.registry` stays light.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core import paths
from core.paths import DATA_DIR_ENV
from core.settings import SettingError

SOURCES = ("cifar10", "folder", "synthetic")
LABELS = {"cifar10": "cifar10", "folder": "folder", "synthetic": "synthetic stand-in"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
OFFLINE_ENV = "CLINIC_OFFLINE"  # set to 1: never download (tests, air-gapped machines)
DOWNLOAD_TIMEOUT_S = 10  # per connection attempt and per read: fail fast when offline
RETRY_AFTER_S = 600  # after a failed download, do not try again for this long (unless asked)
SYNTHETIC_SIZES = (50_000, 10_000)  # train, test: CIFAR-10's sizes
SYNTHETIC_SEED = 2020  # one fixed stand-in data set, like CIFAR-10 itself; runs differ by their own seed
FOLDER_MAX_IMAGES = 200_000
FOLDER_SCAN_SECONDS = 60  # a folder scan (and its image reads) stops with a message after this long
IMAGE_MAX_BYTES = 20_000_000  # one image file
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# the CIFAR-10 python files and their largest allowed size (the real ones: 31,035,704 bytes a batch, 158 the meta)
CIFAR10_MAX_BYTES = {**{f: 32_000_000 for f in CIFAR10_FILES[:-1]}, "batches.meta": 64_000}
PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class Images:
    train_x: torch.Tensor  # (N, 3072) uint8, channel planes R, G, B, each 32x32 row by row
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor  # (M, 3072) uint8
    test_y: torch.Tensor  # (M,) int64
    classes: tuple[str, ...]
    source: str  # "cifar10", "folder" or "synthetic stand-in": shown wherever results appear
    root: str  # the folder it was read from ("" for the synthetic stand-in)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


ProgressFn = Callable[[int, int], None]  # (bytes done, bytes in all; 0 when unknown)


# ---------------------------------------------------------------------------- where


def default_root() -> Path:
    """The data folder: $CLINIC_DATA_DIR, else ~/.cache/convergence-clinic (see core/paths.py)."""
    return paths.data_dir()


def cifar10_root(data_root: str) -> Path:
    """The folder that holds cifar-10-batches-py/: the data folder, or a typed path inside an allowed
    root (SettingError on data_root otherwise, before the file system is touched)."""
    return paths.allowed(data_root, "data_root") if data_root.strip() else default_root()


def describe_root(data_root: str) -> str:
    """The root as a message may show it: the path when it is allowed, else only that it is not."""
    try:
        return str(cifar10_root(data_root))
    except SettingError:
        return "data_root (a folder this server does not allow)"


def cifar10_on_disk(data_root: str) -> bool:
    try:
        folder = cifar10_root(data_root) / CIFAR10_FOLDER
    except SettingError:
        return False
    return all((folder / f).is_file() for f in CIFAR10_FILES)


# ---------------------------------------------------------------------------- download

_failures: dict[str, tuple[float, str]] = {}  # root -> (when, why): a download that failed
_failures_lock = threading.Lock()


def download_failure(data_root: str) -> str | None:
    """Why a download into this root would fail now: downloads are off, or the last one
    failed in the last RETRY_AFTER_S."""
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return f"downloads are off: {OFFLINE_ENV}={os.environ[OFFLINE_ENV]}"
    try:
        root = cifar10_root(data_root)
    except SettingError as e:
        return str(e)
    if root != default_root().resolve() and root != default_root():
        return f"CIFAR-10 is downloaded only into the data folder (${DATA_DIR_ENV}), not into data_root"
    with _failures_lock:
        failed = _failures.get(str(root))  # (when, why); None: no failure remembered
    # time.monotonic() starts near 0 at boot: no default time may stand for "long ago"
    return failed[1] if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S else None


def forget_download_failures() -> None:
    with _failures_lock:
        _failures.clear()


def download_cifar10(data_root: str, on_progress: ProgressFn | None = None) -> None:
    """Fetch and unpack CIFAR-10 (163 MB) into the root, unless it is there already.

    The archive's URL and MD5 are torchvision's (`CIFAR10.url`, `CIFAR10.tgz_md5`); it is
    read in chunks with a timeout so that an offline machine fails in seconds, not minutes,
    and `on_progress(done, total)` sees every chunk. Raises SettingError on `dataset` with
    the reason; a failure is remembered for RETRY_AFTER_S (see `download_failure`).
    """
    if cifar10_on_disk(data_root):
        return
    known = download_failure(data_root)  # also: a data_root that is not the data folder
    if known is not None:
        raise SettingError("dataset", _unavailable(describe_root(data_root), known))
    root = cifar10_root(data_root)  # the data folder: the one folder the app creates
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import extract_archive

    archive = root / CIFAR10.filename
    partial = archive.with_suffix(".part")
    try:
        root.mkdir(parents=True, exist_ok=True)
        md5 = hashlib.md5()
        with urllib.request.urlopen(CIFAR10.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                f.write(chunk)
                md5.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total)
        if md5.hexdigest() != CIFAR10.tgz_md5:
            raise OSError(f"the archive's MD5 is {md5.hexdigest()}, expected {CIFAR10.tgz_md5} (a broken download)")
        partial.replace(archive)
        extract_archive(str(archive), str(root))
        archive.unlink()
        if not cifar10_on_disk(data_root):
            raise OSError(f"the archive did not contain {CIFAR10_FOLDER}/ with {', '.join(CIFAR10_FILES)}")
    except Exception as e:  # no network, a proxy, a full disk: all end the same way for the user
        partial.unlink(missing_ok=True)
        why = _reason(e)
        with _failures_lock:
            _failures[str(root)] = (time.monotonic(), why)
        raise SettingError("dataset", _unavailable(str(root), why)) from None


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)  # urllib's URLError wraps the socket's error
    return str(reason if reason is not None else e) or type(e).__name__


def _unavailable(root: str, why: str) -> str:
    return (
        f"CIFAR-10 is not in {root}/{CIFAR10_FOLDER} and cannot be downloaded ({why}). "
        f"Put the unpacked {CIFAR10_FOLDER}/ folder under data_root (or ${DATA_DIR_ENV}), "
        "or use dataset = synthetic, the offline stand-in"
    )


def cifar10_missing(data_root: str, on_progress: ProgressFn | None = None) -> str | None:
    """Why CIFAR-10 cannot be used from this root now (None: it is on disk, downloaded now if it
    was not and could be). The page asks this before it draws the dataset choice."""
    if cifar10_on_disk(data_root):
        return None
    why = download_failure(data_root)
    if why is None:
        try:
            download_cifar10(data_root, on_progress)
        except SettingError:
            why = download_failure(data_root)
    return why


def download_text(data_root: str, done: int, total: int) -> str:
    """The download's progress in words."""
    return f"Downloading CIFAR-10 (163 MB) into {describe_root(data_root)}: {done / 1e6:.0f} MB"


def stand_in_note(data_root: str, why: str) -> str:
    """What the page says when it trains on the stand-in because CIFAR-10 is missing (markdown)."""
    return (
        f"**Synthetic stand-in.** CIFAR-10 is not in `{describe_root(data_root)}` and could not be "
        f"downloaded ({why}), so this page trains on the offline stand-in: 10 classes of generated 32×32 "
        "colour images (shapes of varied position, size and colour on noisy backgrounds), "
        f"{SYNTHETIC_SIZES[0]:,} for training and {SYNTHETIC_SIZES[1]:,} for testing, like CIFAR-10. The "
        "failure and its fixes are the same; the accuracies are not CIFAR-10's. Put the unpacked "
        f"`{CIFAR10_FOLDER}/` folder there (or set `${DATA_DIR_ENV}`) to use the real images."
    )


# ---------------------------------------------------------------------------- read


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, nothing else: a CIFAR batch
    file cannot run code (a plain `pickle.load` calls whatever the file names)."""

    ALLOWED = frozenset(
        {
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # Python 2 pickles (CIFAR-10's own) write bytes this way
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def read_batch(folder: Path, name: str) -> dict:
    """One CIFAR-10 python file (a name from CIFAR10_FILES), its size checked before reading and
    unpickled with arrays only. Raises SettingError on data_root."""

    def refuse(why: str) -> SettingError:
        return SettingError("data_root", f"cannot read the CIFAR-10 files in {folder}: {name} {why}")

    if name not in CIFAR10_MAX_BYTES:
        raise refuse("is not a CIFAR-10 file name")
    path = folder / name
    if path.is_symlink():
        raise refuse("is a symlink (copy the file instead)")
    raw = paths.read_limited(path, CIFAR10_MAX_BYTES[name], "data_root")
    try:
        entry = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, ValueError, …
        raise refuse(f"is not a CIFAR-10 batch file ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(entry, dict):
        raise refuse("is not a CIFAR-10 batch file (not a dict)")
    return entry


def read_batches(data_root: str, train: bool) -> tuple[np.ndarray, list[int], list[str]]:
    """(images (N, 32, 32, 3) uint8, labels, class names) from CIFAR-10's python files, as
    `torchvision.datasets.CIFAR10` reads them (its checksums not checked, so that CIFAR-format
    files from elsewhere load too: tests, the benchmark, your own)."""
    folder = cifar10_root(data_root) / CIFAR10_FOLDER
    names = CIFAR10_FILES[:5] if train else CIFAR10_FILES[5:6]
    data, labels = [], []
    try:
        for name in names:
            entry = read_batch(folder, name)
            data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += [int(v) for v in entry.get("labels", entry.get("fine_labels", []))]
        classes = [str(c) for c in read_batch(folder, "batches.meta")["label_names"]]
        images = np.vstack(data).transpose((0, 2, 3, 1))  # HWC, as torchvision holds them
    except SettingError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        raise SettingError(
            "data_root", f"cannot read the CIFAR-10 files in {folder}: malformed ({type(e).__name__})"
        ) from None
    if len(labels) != len(images) or not all(0 <= v < len(classes) for v in labels):
        raise SettingError("data_root", f"the CIFAR-10 files in {folder} have labels that do not match the images")
    return images, labels, classes


def cifar10_dataset(data_root: str, train: bool, transform=None):
    """`torchvision.datasets.CIFAR10` over the batch files in <root>/cifar-10-batches-py, read by
    `read_batches` (arrays only, sizes checked) instead of torchvision's plain unpickling."""
    from torchvision.datasets import CIFAR10, VisionDataset

    class CifarFiles(CIFAR10):
        def __init__(self) -> None:
            VisionDataset.__init__(self, str(cifar10_root(data_root)), transform=transform)
            self.train = train
            self.data, self.targets, self.classes = read_batches(data_root, train)
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CifarFiles()


def read_cifar10(data_root: str) -> Images:
    """CIFAR-10 (or any CIFAR-format batch files), read as `torchvision.datasets.CIFAR10` reads them."""
    train_x, train_y, classes = read_batches(data_root, train=True)
    test_x, test_y, _ = read_batches(data_root, train=False)
    return Images(
        *_planes(train_x, train_y),
        *_planes(test_x, test_y),
        classes=tuple(classes),
        source=LABELS["cifar10"],
        root=str(cifar10_root(data_root)),
    )


def _planes(hwc: np.ndarray, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 32, 32, 3) uint8 images -> (N, 3072) in ToTensor's channel-plane order, labels (N,)."""
    x = torch.from_numpy(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))).reshape(len(hwc), PIXELS)
    return x, torch.as_tensor(np.asarray(labels, dtype=np.int64))


def read_folder(data_root: str) -> Images:
    """Your images in <root>/train/<class>/... and <root>/test/<class>/..., as
    `torchvision.datasets.ImageFolder` would find them (same classes, same order), every image
    converted to RGB and resized to 32x32. The root must lie in an allowed folder (core/paths.py);
    the scan follows no symlink and stops at FOLDER_MAX_IMAGES images or FOLDER_SCAN_SECONDS.
    Raises SettingError on data_root with what is wrong."""
    if not data_root.strip():
        raise SettingError("data_root", "give the folder that holds train/<class>/… and test/<class>/… images")
    root = paths.allowed(data_root, "data_root")
    if not root.is_dir():
        raise SettingError("data_root", f"{root} is not a folder")
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise SettingError(
            "data_root",
            f"{root} has no {' and no '.join(m + '/' for m in missing)} folder; "
            "expected <root>/train/<class>/<image> and <root>/test/<class>/<image>",
        )
    deadline = time.monotonic() + FOLDER_SCAN_SECONDS
    seen = [0]  # images found so far, over both splits
    splits = {s: _read_split(root / s, seen, deadline) for s in ("train", "test")}
    (train_x, train_y, train_classes), (test_x, test_y, test_classes) = splits["train"], splits["test"]
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise SettingError(
            "data_root",
            "train/ and test/ must hold the same class folders; "
            f"only in train/: {', '.join(only_train) or 'none'}; only in test/: {', '.join(only_test) or 'none'}",
        )
    if len(train_classes) < 2:
        raise SettingError("data_root", f"needs at least 2 class folders in train/ (found {len(train_classes)})")
    return Images(train_x, train_y, test_x, test_y, tuple(train_classes), LABELS["folder"], str(root))


def _read_split(folder: Path, seen: list[int], deadline: float) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = paths.subfolders(folder)
    samples = []  # (path, class index) in ImageFolder's order: by folder path, then by file name
    for i, name in enumerate(classes):
        files = paths.walk_files(
            folder / name, IMG_EXTENSIONS, max_files=FOLDER_MAX_IMAGES, deadline=deadline, setting="data_root",
            found=seen[0],
        )  # fmt: skip
        found = sorted(files, key=lambda p: (str(p.parent), p.name))
        seen[0] += len(found)
        samples += [(p, i) for p in found]
    if not samples:
        raise SettingError("data_root", f"no images ({', '.join(IMG_EXTENSIONS)}) in class folders under {folder}")
    images, bad = [], []
    for path, _ in samples:
        if time.monotonic() > deadline:
            raise SettingError("data_root", f"reading the images took over {FOLDER_SCAN_SECONDS} s: use fewer")
        try:
            if path.stat().st_size > IMAGE_MAX_BYTES:
                raise OSError("over 20 MB")
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)))
        except (OSError, Image.DecompressionBombError, ValueError) as e:  # UnidentifiedImageError is an OSError
            bad.append(f"{path.relative_to(folder.parent)} ({type(e).__name__})")
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise SettingError("data_root", f"cannot read {len(bad)} image(s): {bad[0]}{more}")
    x, y = _planes(np.stack(images), [i for _, i in samples])
    return x, y, classes
