"""The benchmark: `python -m bench` (see bench/__main__.py).

Each case has a module here, bench/<case>.py, that defines the same work two ways:

    WORK: str                      what one call does, in words ("3000 steps on 4000 points")
    UNITS: tuple[str, float]       what throughput counts, and how many per call: ("steps", 3000)
    def setup() -> object          build what both paths need once (data files...), untimed
    def posted(state) -> None      the posted pipeline, written faithfully in plain PyTorch
    def app(state) -> None         the app's own path for the same settings (core.runner.execute); it may
                                   return the seconds of the part FLOPS counts (training without testing)

and optionally:

    FLOPS: float                   floating-point operations of one call (for % of matmul peak)
    def concurrent(state) -> None  what two sessions would each run at once (defaults to app)
    POSTED_REPEAT: int             time the posted pipeline this many times, without warm-up (slow ones)
    EXTRA: tuple[str, ...]         names of more functions(state) to time (e.g. another preset)
    EXTRA_REPEAT: dict[str, int]   repeats for some of them

The harness times posted and app interleaved, repeated, and reports medians and ratios.
"""

NOTES = ("<!-- notes -->", "<!-- /notes -->")  # a hand-written block inside a section: kept by rewrites


def replace_section(text: str, heading: str, body: str) -> str:
    """BENCHMARKS.md's `text` with its section that starts at the line `heading` ("## ...") replaced
    by `body` (which starts with that heading), up to the next "## " section; appended when absent.
    The main benchmark, `--examine` and `bench.sharpness` each write their own section this way, so
    that none of them drops another's. A block of hand-written notes in the old section, between the
    NOTES markers, is kept: placed before the new body's table (or at its end), unless the body has one."""
    start = text.find(heading)
    if start < 0:
        return text.rstrip() + "\n\n" + body.rstrip() + "\n"
    nxt = text.find("\n## ", start + len(heading))
    old = text[start:nxt] if nxt >= 0 else text[start:]
    rest = text[nxt + 1 :] if nxt >= 0 else ""
    return text[:start] + _with_notes(body.rstrip(), old) + "\n" + ("\n" + rest if rest else "")


def _with_notes(body: str, old: str) -> str:
    begin, end = old.find(NOTES[0]), old.find(NOTES[1])
    if begin < 0 or end < begin or NOTES[0] in body:
        return body
    notes = old[begin : end + len(NOTES[1])]
    table = body.find("\n| ")
    if table < 0:
        return body + "\n\n" + notes
    return body[:table].rstrip() + "\n\n" + notes + "\n\n" + body[table + 1 :]


def later_sections(text: str) -> str:
    """Every "## " section of BENCHMARKS.md (written by the other benchmark commands): kept by the
    main benchmark when it rewrites its own table above them."""
    start = text.find("\n## ")
    return text[start:] if start >= 0 else ""


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's `ru_maxrss` is inherited: a child started by a 2 GB parent (pytest after the
    AppTest runs, say) reports at least 2 GB even if it never touches a page, because exec
    folds the parent's high-water mark into it. /proc/self/status's VmHWM belongs to this
    process's own memory map, so it is used where it exists."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 * 1024 if sys.platform == "darwin" else 1024)  # macOS reports bytes
