"""The examiner's report (text and the one-line JSON) and the run record (`--out`, the page).

The run record is plain JSON, columns as lists: per-step loss and lr; per-layer gradient
norms and update / weight ratios and the activation layers' dead / saturated shares on the
sampled steps; the first layer's input statistics; the loss calls' shapes; the findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.examine.findings import Finding

FORMAT = "convergence-clinic/examine-record"
VERSION = 1
MAX_POINTS = 5000  # per-step series longer than this keep every k-th step (and the last): a light record


def _num(v):
    return v if v is None or (isinstance(v, float) and math.isfinite(v)) or isinstance(v, int) else None


def columns(rows: list[dict], keys: tuple[str, ...]) -> dict[str, list]:
    return {k: [_num(r.get(k)) if k not in ("layer", "site", "kind") else r.get(k) for r in rows] for k in keys}


@dataclass
class Report:
    script: str
    seconds: float
    steps: int
    findings: list[Finding]
    status: int | None = None
    stopped: bool = False
    exception: dict | None = None
    notes: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, e) -> Report:
        m = e.monitor
        rep = cls(e.script, round(e.seconds, 3), m.step, list(e.findings), e.status, e.stopped, e.exception)
        rep.notes = list(e.notes)
        if not m.step:
            rep.notes.append("no optimizer step was seen: nothing trained (or the updates are written by hand)")
        lr = dict(m.lr)
        every = -(-len(e.losses) // MAX_POINTS) if e.losses else 1
        kept = [sv for i, sv in enumerate(e.losses) if i % every == 0 or i == len(e.losses) - 1]
        rep.record = {
            "format": FORMAT,
            "version": VERSION,
            **rep.to_dict(),
            "status": e.status,
            "stopped": e.stopped,
            "exception": e.exception,
            "notes": rep.notes,
            "series": {
                "step": [s for s, _ in kept],
                "loss": [_num(v) for _, v in kept],
                "lr": [_num(lr.get(s)) for s, _ in kept],
            },
            "layers": columns(m.layers, ("step", "layer", "grad_norm", "update_ratio")),
            "activations": columns(m.acts, ("step", "site", "kind", "dead", "saturated", "mean", "std")),
            "inputs": columns(m.inputs, ("step", "mean", "std", "rms", "max")),
            "loss_calls": [
                {"fn": fn, "input": list(x), "target": list(y), "reduction": red, **v}
                for (fn, x, y, red), v in m.loss_calls.items()
            ],
            "optimizers": m.optimizer_kinds,
        }
        return rep

    @property
    def summary(self) -> str:
        if not self.findings:
            return "no finding" + (" (no optimizer step was seen)" if not self.steps else "")
        return f"{len(self.findings)} finding{'s' if len(self.findings) > 1 else ''}: " + ", ".join(
            f.key for f in self.findings
        )

    def to_dict(self) -> dict:
        """The JSON report: {script, seconds, steps, findings: [{key, title, evidence, fix, step}], summary}."""
        out = {
            "script": self.script,
            "seconds": self.seconds,
            "steps": self.steps,
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary,
        }
        if self.exception:
            out["exception"] = self.exception
        return out

    def text(self) -> str:
        head = f"Examined {self.script}: {self.steps} optimizer steps in {self.seconds:.2f} s"
        if self.stopped:
            head += " (stopped there: --steps)"
        lines = ["", "=" * 72, head]
        if self.exception:
            x = self.exception
            lines.append(f"The script raised {x['type']} at {x['file']}, line {x['line']}: {x['message']}")
        if not self.findings:
            lines.append("No finding." + ("" if self.steps else " No optimizer step was seen."))
        for f in self.findings:
            lines += [
                "",
                f"[{f.key}] {f.title} (from step {f.step})",
                f"  evidence: {f.evidence}",
                f"  fix:      {f.fix}",
            ]
        lines += [f"note: {n}" for n in self.notes if "no optimizer step" not in n or self.findings]
        lines.append("=" * 72)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:  # a notebook cell ending in `e.report()` shows the text
        return self.text()
