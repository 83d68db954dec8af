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
