"""What a case is: the one record that pages, the CLI, the benchmark and the tests read.

Each case is one folder, `core/cases/<name>/`: a frozen config dataclass whose fields are
declared once with `knob` (core/settings.py), its named presets, one
`run(config, device, on_progress=None)` function, its diagnosis, its charts, its standalone
script and its benchmark, each in a small file of its own. `__init__.py` wires them into one
`Case` named `CASE`, and `core/registry.py` lists it. Everything a page or the CLI needs from a
case is a field here: nothing is looked up by name or by file path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core import settings as st_
from core import speed
from core.seeds import Spread
from core.settings import Setting, SettingError

Runs = Mapping[str, Any]  # run name ("current", "as-posted", pins) -> RunResult, in drawing order


@dataclass(frozen=True)
class Finding:
    """One diagnosis: a problem the measurements show, and the settings that fix it."""

    key: str
    title: str
    evidence: str  # measured, in words
    fix: Mapping[str, Any] = field(default_factory=dict)  # setting -> value


@dataclass(frozen=True)
class Cost:
    """A run's cost estimated from its settings, before it starts: wall seconds on this machine
    (`measured`: a cost model fitted to step times on the reference CPU, scaled by core/speed.py;
    tests/test_security.py keeps it within 3x), and the setting that most directly makes it cheaper."""

    seconds: float
    lower: str  # the setting the message names
    advice: str = ""  # what to do, when it is not simply "lower <setting>"

    @classmethod
    def measured(cls, reference_seconds: float, lower: str, advice: str = "") -> Cost:
        """A cost model's estimate in seconds on the reference CPU, as seconds on this machine."""
        return cls(speed.scaled(reference_seconds), lower, advice)


@dataclass(frozen=True)
class Task:
    """A second job of a case on the same config, which a page (`ui.run(..., task=...)`) and the CLI
    (`run CASE --task NAME`) ask for explicitly; the runner checks and limits it as it does the case's
    run (linreg: the sweep is its run, one run of the sweep in detail its task "single")."""

    run: Callable[..., Any]  # (config, device, on_progress=None) -> RunResult; its __name__ keys the cache
    check: Callable[[Any], list[str]] = lambda config: []  # what it refuses beyond the case's own check
    cost: Callable[[Any], Cost] = lambda config: Cost(0.0, "")  # estimated before it runs


@dataclass(frozen=True)
class Case:
    name: str  # CLI name, e.g. "sine"
    short: str  # navigation label, e.g. "Sine fit"
    icon: str  # navigation icon, a Streamlit material icon (drawn from the font Streamlit bundles)
    title: str  # page title
    symptom: str  # the poster's symptom in one sentence
    page: str  # the page file, e.g. "pages/1_Sine_fit.py"
    config_cls: type
    presets: Mapping[str, Any]  # name -> config; "as-posted" and "fixed" always exist
    run: Callable[..., Any]  # run(config, device, on_progress=None) -> RunResult
    # (config, result) -> [Finding]: what the measurements show, each with the settings that fix it
    diagnose: Callable[[Any, Any], list[Finding]] = lambda config, result: []
    # runs -> {name: alt.Chart}: the page's charts, which an exported figure also uses
    figures: Callable[[Runs], Mapping[str, Any]] | None = None
    # the standalone script, a module that imports nothing from this project: `main(config: dict) ->
    # (history, metrics)` and a CONFIG block that the export rewrites; the tests' oracle
    script: Any = None
    # the case's benchmark, a module with the protocol bench/__init__.py describes (posted vs app paths)
    bench: Any = None
    # (config, device, on_progress=None) -> RunResult of the learning-rate range test (None: the case has none)
    lr_find: Callable[..., Any] | None = None
    check: Callable[[Any], list[str]] = lambda config: []  # cross-setting rules -> messages
    heavy: Callable[[Any], bool] = lambda config: False  # big enough to use several threads?
    serial: Callable[[Any], bool] = lambda config: False  # bound by the interpreter lock: queue, do not share it
    cost: Callable[[Any], Cost] = lambda config: Cost(0.0, "")  # estimated before the run (core/runner.py)
    reference: Callable[[Any], Any] | None = None  # config -> the as-posted run to compare it with
    # settings the page starts every preset from (a lighter budget, say); its links are written relative to them
    first_view: Mapping[str, Any] = field(default_factory=dict)
    # config -> the preset whose model and optimizer it follows, whatever its data, budget and seed (the page's label)
    recipe: Callable[[Any], str | None] | None = None
    # (config, lr) -> the same settings with that lr on a short budget: how the range test's candidate
    # rates are checked before one is offered (None: the case has no range test)
    trial: Callable[[Any, float], Any] | None = None
    # the browser tab's icon: an emoji, which the browser draws itself (a material icon as the tab's icon is
    # fetched from fonts.gstatic.com, so offline it was missing)
    emoji: str = "🩺"
    why: Mapping[str, str] = field(default_factory=dict)  # preset -> why it exists, one sentence (its tooltip)
    # config -> (config, notes): a link's clash between settings that the case resolves itself, keeping the
    # rest of the link (each note says what it changed); None: a clash falls back to the preset
    settle: Callable[[Any], tuple[Any, list[str]]] | None = None
    settings: tuple[Setting, ...] = field(init=False, default=())  # derived from the config's knobs
    tasks: Mapping[str, Task] = field(default_factory=dict)  # name -> a second job on the same config
    # settings the case no longer has -> what an old link or command line that names one is told
    retired: Mapping[str, str] = field(default_factory=dict)
    # a failure that depends on the seed: the page trains the seed set after the first view and shows the
    # spread of this metric (None: not seed-dependent, or too costly to repeat)
    spread: Spread | None = None

    def comparison(self, config: Any) -> Any | None:
        """The as-posted config to overlay on `config`'s charts (None when it is the same run)."""
        ref = self.reference(config) if self.reference is not None else self.presets["as-posted"]
        return None if ref is None or ref == config else ref

    def __post_init__(self):
        object.__setattr__(self, "settings", st_.settings_of(self.config_cls))
        for need in ("as-posted", "fixed"):
            if need not in self.presets:
                raise TypeError(f"{self.name}: missing preset {need!r}")

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        if name in self.retired:
            raise SettingError(name, self.retired[name])
        known = ", ".join(s.name for s in self.settings)
        raise SettingError(name, f"unknown setting for case {self.name}; settings are: {known}")

    def kind(self, name: str) -> str:
        s = self.setting(name)
        return s.kind or st_.kind_of(st_.defaults(self.config_cls)[name], s.choices)

    def errors(self, config: Any) -> list[str]:
        """Every problem with `config`, each naming its setting; [] when it may run."""
        problems = []
        for s in self.settings:
            try:
                st_.check_value(s, self.kind(s.name), getattr(config, s.name))
            except SettingError as e:
                problems.append(str(e))
        if not problems:  # cross-setting rules assume each value is sane on its own
            problems += self.check(config)
        return problems

    def validate(self, config: Any) -> Any:
        """Return `config` unchanged, or raise SettingError with every problem in one line."""
        problems = self.errors(config)
        if problems:
            raise SettingError.of(problems)
        return config

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            have = f"must be one of {', '.join(self.tasks)}" if self.tasks else f"case {self.name} has none"
            raise SettingError("task", f"{have} (got {name!r})")
        return self.tasks[name]

    def preset(self, name: str) -> Any:
        if name not in self.presets:
            raise SettingError("preset", f"must be one of {', '.join(self.presets)} (got {name!r})")
        return self.presets[name]

    def configure(self, preset: str = "as-posted", overrides: Mapping[str, str] | None = None) -> Any:
        """A preset with KEY=VALUE text overrides applied (as the CLI and URLs give them), validated."""
        values = {}
        for key, text in (overrides or {}).items():
            s = self.setting(key)
            values[key] = st_.parse(s, self.kind(key), text)
        config = dataclasses.replace(self.preset(preset), **values)
        return self.validate(config)

    def describe(self) -> list[dict[str, Any]]:
        """One row per setting: name, type, default, allowed values, help (for `core list`)."""
        base = st_.defaults(self.config_cls)
        return [
            {
                "name": s.name,
                "type": self.kind(s.name),
                "default": st_.to_text(base[s.name]),
                "allowed": s.allowed(self.kind(s.name)),
                "help": s.help,
            }
            for s in self.settings
        ]

    def preset_name(self, config: Any) -> str | None:
        """The name of the preset equal to `config`, if any."""
        return next((name for name, p in self.presets.items() if p == config), None)

    def page_preset(self, name: str) -> Any:
        """A preset as the page opens it: with `first_view`'s settings on top."""
        return dataclasses.replace(self.preset(name), **self.first_view)

    def file_stem(self, config: Any) -> str:
        """What to call files of this run: the case and its preset (the recipe it follows, where the
        case has one, as its page labels it), `-quick` on the page's first-view budget, else `custom`
        (`cifar-x255-quick-history.csv`)."""
        name = self.preset_name(config)
        if name is None and self.recipe is not None:
            name = self.recipe(config)
            if name and self.first_view and all(getattr(config, k) == v for k, v in self.first_view.items()):
                name += "-quick"
        return f"{self.name}-{name or 'custom'}"
