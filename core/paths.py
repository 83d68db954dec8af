"""Server paths a person may name, and the only ways the app reads them.

On a public server a path is hostile input. The rules:
- a link never names a path (`Setting.in_url` is False for path settings; core/ui/settings.py);
- a typed path (the sidebar's data_root, the CLI's --set points=… and data_root=…) must lie
  inside an allowed root: the data folder ($CLINIC_DATA_DIR or ~/.cache/convergence-clinic),
  the app's working folder, and any folder listed in $CLINIC_ALLOWED_ROOTS (separated by
  the OS's path separator, ':' on Linux). The check is made on the path as written first
  (no file system access for a path outside every root) and again after resolving symlinks;
- a file's size is checked before it is read, and no more than the limit is ever read;
- a folder walk is our own: it follows no symlink, and stops at a count and a time limit.

Every refusal is a SettingError naming the setting; messages never show a file's content
and never list a folder outside the allowed roots.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from core.settings import SettingError

DATA_DIR_ENV = "CLINIC_DATA_DIR"
ALLOWED_ROOTS_ENV = "CLINIC_ALLOWED_ROOTS"
MAX_PATH_CHARS = 4096


def data_dir() -> Path:
    """The app's data folder: $CLINIC_DATA_DIR, else ~/.cache/convergence-clinic (not created here)."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(os.path.abspath(Path(env).expanduser() if env else Path.home() / ".cache" / "convergence-clinic"))


def allowed_roots() -> list[Path]:
    """The folders a typed path may point into, as absolute paths (symlinks not yet resolved)."""
    roots = [data_dir(), Path(os.getcwd())]
    extra = os.environ.get(ALLOWED_ROOTS_ENV, "")
    roots += [Path(os.path.abspath(Path(p.strip()).expanduser())) for p in extra.split(os.pathsep) if p.strip()]
    return roots


def _describe_roots() -> str:
    return f"the data folder (${DATA_DIR_ENV}), the app's working folder, or a folder listed in ${ALLOWED_ROOTS_ENV}"


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def allowed(text: str, setting: str) -> Path:
    """`text` as an absolute, symlink-resolved path inside an allowed root, or a SettingError.

    A path outside every root as written is refused before the file system is touched (no
    stat: the message is the same whether it exists or not). A path inside one whose
    symlinks lead outside is refused too.
    """
    raw = str(text).strip()
    if not raw or len(raw) > MAX_PATH_CHARS or "\0" in raw:
        raise SettingError(setting, f"must be a path of at most {MAX_PATH_CHARS} characters")
    written = Path(os.path.abspath(Path(raw).expanduser()))  # '..' collapsed, no file system access
    roots = allowed_roots()
    refuse = SettingError(setting, f"must be a path inside {_describe_roots()} (got {raw!r})")
    if not _inside(written, roots):
        raise refuse
    try:
        real = written.resolve(strict=False)
        real_roots = [r.resolve(strict=False) for r in roots]
    except (OSError, RuntimeError):  # a symlink loop, a permission error on the way
        raise SettingError(setting, f"cannot resolve {raw!r} (a symlink loop?)") from None
    if not _inside(real, real_roots):
        raise refuse
    return real


def read_limited(path: Path, max_bytes: int, setting: str) -> bytes:
    """A regular file's bytes, its size checked before reading and at most `max_bytes` read."""
    try:
        if not path.is_file():
            raise SettingError(setting, f"{path.name!r} is not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise SettingError(setting, f"the file is {size / 1e6:.1f} MB; at most {max_bytes / 1e6:g} MB")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # a file that grew since the stat is still bounded
    except OSError as e:
        raise SettingError(setting, f"cannot read {path.name!r} ({type(e).__name__})") from None
    if len(data) > max_bytes:
        raise SettingError(setting, f"the file is over {max_bytes / 1e6:g} MB")
    return data


def subfolders(folder: Path) -> list[str]:
    """The names of `folder`'s real subfolders (symlinks skipped), sorted."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))


def walk_files(
    folder: Path, suffixes: tuple[str, ...], *, max_files: int, deadline: float, setting: str, found: int = 0
) -> Iterator[Path]:
    """Regular files under `folder` with these suffixes, depth first in name order.

    Follows no symlink (a `loop -> ..` link cannot trap it), and raises SettingError once
    more than `max_files` are found (counting `found` from earlier walks) or `time.monotonic()`
    passes `deadline`, whichever comes first.
    """
    stack = [folder]
    while stack:
        current = stack.pop()
        if time.monotonic() > deadline:
            raise SettingError(setting, "the folder scan took too long: use a smaller folder")
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # unreadable: skipped, like a file that is not an image
        dirs = []
        for e in entries:
            if e.is_symlink() or e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                dirs.append(Path(e.path))
            elif e.is_file(follow_symlinks=False) and e.name.lower().endswith(suffixes):
                found += 1
                if found > max_files:
                    raise SettingError(setting, f"more than {max_files:,} images under the folder; at most that many")
                yield Path(e.path)
        stack.extend(reversed(dirs))
