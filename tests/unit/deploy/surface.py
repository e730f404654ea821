"""What the deploy files may refer to, read from the code itself: the metrics the
worker exports, its default metrics port, and the flags (and their `STREAMREC_*`
variables) of each `streamrec` subcommand. Deriving these instead of listing them
means a renamed metric or flag fails the deploy tests instead of a deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from unittest import mock

from streamrec.cli.main import build_parser
from streamrec.common.errors import StreamrecError
from streamrec.common.settings import ENV_PREFIX, env_name
from streamrec.worker.config import WorkerConfig
from streamrec.worker.metrics import WorkerMetrics, _ProducerRates

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
DEFAULTS = WorkerConfig(model_dir=Path("."))
METRICS_PORT = DEFAULTS.metrics_port
PROBES = ("/healthz", "/readyz")

# The sample names Prometheus stores for each kind of metric family.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}

# Flags every subcommand's parse needs a value for (required=True).
REQUIRED_ARGS = {"train": ["--out", "/tmp/out"], "evaluate": ["--model", "/tmp/model"]}


def exported_metric_names() -> frozenset[str]:
    """Every series name a running worker serves on /metrics, plus Prometheus's `up`.

    Built from the families of a real `WorkerMetrics` registry and their types, not
    from its current samples: a labelled metric has no sample until its first label
    value (e.g. `streamrec_events_consumed_total{topic}` before the first event).
    The producer rates are registered by a running worker only, so they are added
    from their own table.
    """
    names = {"up"}
    for family in WorkerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    names.update(_ProducerRates.NAMES.values())
    return frozenset(names)


def subcommand(command: str) -> argparse.ArgumentParser:
    """The parser of `streamrec <command>`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Only `env` among the STREAMREC_* variables while the parser is built and used."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    with mock.patch.dict(os.environ, clean | dict(env), clear=True):
        yield


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """`streamrec ARGV` parsed as the CLI would under `env`; ValueError says what is wrong.

    argparse exits on a bad flag and `env_default` raises on a bad variable; both become
    a ValueError so a test can report which file and container broke.
    """
    argv = list(argv)
    with _environment(env or {}), contextlib.redirect_stderr(_Sink()) as err:
        try:
            return build_parser().parse_args(argv)
        except SystemExit as exc:
            raise ValueError(f"streamrec {' '.join(argv)}: {err.text.strip()}") from exc
        except StreamrecError as exc:
            raise ValueError(str(exc)) from exc


def env_problems(command: str, env: Mapping[str, str]) -> list[str]:
    """Why each `STREAMREC_*` variable of `env` would not configure `streamrec <command>`.

    A variable must name a flag of the command, that flag must read it (some flags,
    like `--out` of train, have no environment fallback), and its value must parse and
    be one of the flag's choices (argparse checks choices of typed flags only).
    """
    flags = {env_name(option): action for action in subcommand(command)._actions
             for option in action.option_strings if option.startswith("--")}
    required = REQUIRED_ARGS.get(command, [])
    problems = []
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        action = flags.get(name)
        if action is None:
            problems.append(f"{name}: `streamrec {command}` has no flag {_flag(name)}")
            continue
        probe = _probe_value(action)
        try:
            unset = getattr(parse([command, *required], {}), action.dest)
            probed = getattr(parse([command, *required], {name: probe}), action.dest)
        except ValueError as exc:
            problems.append(f"{name}: probing it failed: {exc}")
            continue
        if probed == unset:
            problems.append(f"{name}: {_flag(name)} of `streamrec {command}` does not read it")
            continue
        try:
            parsed = getattr(parse([command, *required], {name: value}), action.dest)
        except ValueError as exc:
            problems.append(f"{name}={value!r}: {exc}")
            continue
        if action.choices and parsed not in action.choices:  # argparse skips defaults
            problems.append(f"{name}={value!r}: invalid choice, not one of "
                            f"{', '.join(map(str, action.choices))}")
    return problems


def _flag(name: str) -> str:
    return "--" + name.removeprefix(ENV_PREFIX).lower().replace("_", "-")


def _probe_value(action: argparse.Action) -> str:
    """A value for the action's variable that differs from its default and parses."""
    if isinstance(action, argparse._StoreTrueAction):
        return "true"
    if action.choices:
        return next(str(c) for c in action.choices if c != action.default)
    if action.type in (int, float):
        return "424242"
    return "probe-value"


class _Sink:
    """A stderr stand-in that keeps argparse's message for the error raised instead."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        return
