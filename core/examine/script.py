"""`python -m core examine SCRIPT.py [--json] [--out DIR] [--steps N] [-- ARGS...]`.

The script runs in this process as `__main__`, as `python SCRIPT.py ARGS...` would run it
(sys.argv, sys.path[0] and sys.modules['__main__'] set for it, restored after), with the
examiner installed. Its output passes through; its exit status is kept (SystemExit's code,
1 when it raises, with the traceback on stderr as Python prints it); the report follows.
"""

from __future__ import annotations

import builtins
import json
import sys
import traceback
import types
from pathlib import Path

MAX_BYTES = 2_000_000  # a training script, not a data file


class ScriptError(Exception):
    """Bad input to the command: one line, exit status 2."""


def load(path: str | Path):
    """-> (resolved path, compiled code); ScriptError for a missing, huge or unparsable file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ScriptError(f"{path}: no such file")
    if not p.is_file():
        raise ScriptError(f"{path}: not a file")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise ScriptError(f"{path}: {size:,} bytes; a script of at most {MAX_BYTES:,} bytes is expected")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScriptError(f"{path}: cannot be read as UTF-8 text ({e})") from None
    try:
        return p.resolve(), compile(text, str(p.resolve()), "exec")
    except (SyntaxError, ValueError) as e:
        line = getattr(e, "lineno", None)
        at = f", line {line}" if line else ""
        raise ScriptError(f"{path}{at}: {type(e).__name__}: {getattr(e, 'msg', e)}") from None


def exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints it and exits with 1
    return 1


def where(exc: BaseException, path: Path) -> dict:
    """The exception's type, message and the line of the script (else the innermost frame) it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename == str(path)]
    f = (mine or frames or [None])[-1]
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:500],
        "file": Path(f.filename).name if f else path.name,
        "line": f.lineno if f else None,
    }


def run(path: str | Path, args=(), max_steps: int | None = None, quiet_traceback=False, own_process_state=True):
    """Run the script as __main__ under the examiner; -> its Report (status, exception and all).
    own_process_state: set sys.argv, sys.path[0] and sys.modules['__main__'] for the script, as
    `python SCRIPT.py` would (the command); False in a server, where other threads share them."""
    from core.examine.hooks import StopRun, examine

    p, code = load(path)
    module = types.ModuleType("__main__")
    module.__dict__.update({"__file__": str(p), "__builtins__": builtins, "__spec__": None})
    saved = sys.argv, sys.modules["__main__"], list(sys.path)
    if own_process_state:
        sys.argv, sys.modules["__main__"] = [str(p), *args], module
        sys.path.insert(0, str(p.parent))
    status = 0
    try:
        with examine(max_steps=max_steps, script=p.name) as e:
            try:
                exec(code, module.__dict__)
            except SystemExit as x:
                status = exit_status(x.code)
            except StopRun:
                raise
            except Exception as x:
                if not quiet_traceback:  # as Python prints it, from the script's frame on
                    traceback.print_exception(type(x), x, x.__traceback__.tb_next)
                e.exception = where(x, p)
                status = 1
    finally:
        if own_process_state:
            sys.argv, sys.modules["__main__"] = saved[0], saved[1]
            sys.path[:] = saved[2]
    e.status = status
    return e.report()


def out_dir(text: str | None) -> Path | None:
    if text is None:
        return None
    d = Path(text).expanduser()
    if d.exists() and not d.is_dir():
        raise ScriptError(f"--out {text}: exists and is not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScriptError(f"--out {text}: cannot create the folder ({e.strerror})") from None
    return d


def write_record(report, folder: Path) -> Path:
    from core.export import jsonable

    path = folder / f"{Path(report.script).stem}.examine.json"
    path.write_text(json.dumps(jsonable(report.record), allow_nan=False))
    return path


def main(args, script_args: list[str]) -> int:
    """The `examine` command: -> the script's exit status (2 for bad input to the command)."""
    try:
        folder = out_dir(args.out)
        load(args.script)  # the file's checks before anything runs
    except ScriptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = run(args.script, script_args, max_steps=args.steps)
    sys.stdout.flush()
    sys.stderr.flush()
    print(report.text())
    if folder is not None:
        print(f"run record: {write_record(report, folder)}")
    if args.json:
        from core.export import jsonable

        print(json.dumps(jsonable(report.to_dict()), allow_nan=False))
    sys.stdout.flush()
    return report.status or 0
