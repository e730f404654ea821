"""The pure half of `bench soak`: its time series, the growth verdict, the CSV and the plot.

`soak.py` runs the worker and samples it every few seconds; this module turns the
samples into what a reader checks. A `Sample` is one window: the worker's resident
memory and CPU from /proc, its consumer lag, pending users and users from /metrics,
and the count, p50 and p99 of the recommendations that reached the outside consumer
in the window.
`judge` says whether anything grows, with its thresholds stated: RSS and backlog are
fitted over the second half of each worker process's life (the first half holds the
start-up: model load, changelog restore, new users), p99 compares the last windows
with the first ones. Nothing here touches Kafka or a process, so unit tests feed it
synthetic series.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

import numpy as np

from streamrec.bench.report import table

logger = logging.getLogger(__name__)

NAN = float("nan")
MIN_FIT_POINTS = 3  # fewer finite samples in a half-life: that trend is not judged


@dataclass(frozen=True)
class Sample:
    """One sampling window, ending `t_s` seconds into the soak."""

    t_s: float
    life: int  # 1: the first worker process, 2: the one started after the restart
    rss_mb: float  # VmRSS at the end of the window (NaN: no worker process)
    cpu: float  # worker utime + stime per second over the window, in cores (NaN: restarted)
    lag: float  # records behind the partitions' ends, summed (NaN: /metrics unreachable)
    pending: float  # users consumed and waiting for their recommendation (/metrics)
    users: float  # users in the worker's memory (NaN: /metrics unreachable)
    sent: int  # events produced in the window
    recs: int = 0  # recommendations that arrived in the window
    p50_ms: float = NAN  # event timestamp to arrival, of those recommendations
    p99_ms: float = NAN


CSV_FIELDS = tuple(f.name for f in fields(Sample))


@dataclass(frozen=True)
class Thresholds:
    """What "no growth" means; each is stated in the report beside the figure."""

    rss_mb_per_min: float = 1.0  # RSS slope over the second half of each worker's life
    # Backlog slope there (consumer lag + users pending in the worker: a worker keeps up
    # to 16 batches of consumed events waiting, which the lag alone does not show), in
    # seconds of offered events per minute.
    backlog_s_per_min: float = 0.5
    p99_factor: float = 2.0  # the last windows' p99 against the first windows'
    p99_floor_ms: float = 50.0  # a first p99 below this counts as this: 10 -> 25 ms is noise
    compare_share: float = 0.1  # windows compared at each end: this share of all, at least 2


@dataclass(frozen=True)
class LifeTrend:
    """One worker process: its span and the trends of its second half."""

    life: int
    from_s: float
    to_s: float
    rss_end_mb: float
    rss_mb_per_min: float  # least-squares slope over the second half (NaN: too few samples)
    backlog_per_min: float  # lag + pending, per minute, the same way
    backlog_mean: float
    cpu_mean: float  # cores, over the whole life


@dataclass(frozen=True)
class Verdict:
    """The trends, the p99 comparison and, per check, True (fine), False (grows) or None."""

    lives: tuple[LifeTrend, ...]
    p99_first_ms: float
    p99_last_ms: float
    backlog_limit_per_min: float  # `backlog_s_per_min` at the offered rate
    thresholds: Thresholds
    rss_ok: bool | None
    backlog_ok: bool | None
    p99_ok: bool | None

    @property
    def word(self) -> str:
        """`growth` if any check failed, `inconclusive` if one could not be made."""
        checks = (self.rss_ok, self.backlog_ok, self.p99_ok)
        if False in checks:
            return "growth"
        return "inconclusive" if None in checks else "no growth"

    def lines(self) -> list[str]:
        """One line per check, then the word; what `bench soak` prints."""
        th = self.thresholds

        def mark(ok: bool | None) -> str:
            return {True: "ok", False: "GROWS", None: "not judged (too few samples)"}[ok]

        rss = ", ".join(f"life {x.life} {x.rss_mb_per_min:+.2f}" for x in self.lives)
        backlog = ", ".join(f"life {x.life} {x.backlog_per_min:+,.0f}" for x in self.lives)
        return [
            f"RSS slope, second half of each life (MB/min): {rss}; limit "
            f"{th.rss_mb_per_min:g}: {mark(self.rss_ok)}",
            f"backlog (lag + pending users) slope, second half of each life (per min): "
            f"{backlog}; limit {self.backlog_limit_per_min:,.0f} ({th.backlog_s_per_min:g} s of "
            f"offered events per minute): {mark(self.backlog_ok)}",
            f"p99, median of the last windows {self.p99_last_ms:,.0f} ms against the first "
            f"{self.p99_first_ms:,.0f} ms; limit {th.p99_factor:g}x (a first p99 under "
            f"{th.p99_floor_ms:g} ms counts as {th.p99_floor_ms:g}): {mark(self.p99_ok)}",
            f"verdict: {self.word}",
        ]


def with_latencies(samples: Sequence[Sample], start_ms: float, arrival_ms: np.ndarray,
                   latency_ms: np.ndarray) -> list[Sample]:
    """Each sample with the count, p50 and p99 of the recommendations that arrived in its
    window, [previous sample, this sample), timed from `start_ms` (epoch ms)."""
    edges = start_ms + 1000.0 * np.array([0.0, *(s.t_s for s in samples)])
    window = np.searchsorted(edges, arrival_ms, side="right") - 1
    out = []
    for i, sample in enumerate(samples):
        ms = latency_ms[window == i]
        p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (NAN, NAN)
        out.append(replace(sample, recs=len(ms), p50_ms=float(p50), p99_ms=float(p99)))
    return out


def slope_per_min(t_s: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of `values` per minute; NaN with fewer than 3 finite points."""
    keep = np.isfinite(values)
    if keep.sum() < MIN_FIT_POINTS:
        return NAN
    return float(np.polyfit(t_s[keep] / 60.0, values[keep], 1)[0])


def life_trends(samples: Sequence[Sample]) -> tuple[LifeTrend, ...]:
    """Per worker process, the trends of RSS and backlog over the second half of its
    life (its span: the samples with a live process)."""
    trends = []
    for life in sorted({s.life for s in samples}):
        mine = [s for s in samples if s.life == life and math.isfinite(s.rss_mb)]
        if not mine:
            continue
        t = np.array([s.t_s for s in mine])
        half = t >= (t[0] + t[-1]) / 2
        rss, backlog = np.array([s.rss_mb for s in mine]), np.array([backlog_of(s) for s in mine])
        trends.append(LifeTrend(
            life, float(t[0]), float(t[-1]), float(rss[-1]),
            slope_per_min(t[half], rss[half]), slope_per_min(t[half], backlog[half]),
            _nanmean(backlog), _nanmean(np.array([s.cpu for s in mine]))))
    return tuple(trends)


def backlog_of(sample: Sample) -> float:
    """Consumer lag plus users pending in the worker (lag alone if pending is unknown)."""
    return sample.lag + (sample.pending if math.isfinite(sample.pending) else 0.0)


def judge(samples: Sequence[Sample], rate: float, thresholds: Thresholds) -> Verdict:
    """Whether RSS, backlog or p99 grow over the soak (see `Thresholds`)."""
    lives = life_trends(samples)
    backlog_limit = thresholds.backlog_s_per_min * rate
    p99 = np.array([s.p99_ms for s in samples])
    # The first window holds the worker's first batches and the consumer's start: skipped.
    k = max(2, round(thresholds.compare_share * len(samples)))
    first, last = _nanmedian(p99[1:1 + k]), _nanmedian(p99[-k:])
    p99_ok = (None if not (math.isfinite(first) and math.isfinite(last)) or len(p99) < 2 + k
              else bool(last <= thresholds.p99_factor * max(first, thresholds.p99_floor_ms)))
    return Verdict(
        lives, first, last, backlog_limit, thresholds,
        _all_below([x.rss_mb_per_min for x in lives], thresholds.rss_mb_per_min),
        _all_below([x.backlog_per_min for x in lives], backlog_limit), p99_ok)


def recovered_s(samples: Sequence[Sample], restart_s: float, verdict: Verdict) -> float | None:
    """When latency was back after the restart: the end of the first window within the
    p99 limit after the first one above it (a window without arrivals is above it);
    `restart_s` if no window after it went above; None if none came back."""
    th = verdict.thresholds
    limit = th.p99_factor * max(verdict.p99_first_ms, th.p99_floor_ms)
    after = [s for s in samples if s.t_s > restart_s]
    bad = next((i for i, s in enumerate(after) if not s.p99_ms <= limit), None)
    if bad is None:
        return restart_s
    return next((s.t_s for s in after[bad:] if s.p99_ms <= limit), None)


def summary(samples: Sequence[Sample], verdict: Verdict) -> str:
    """The markdown table of the report: one row per worker life."""
    rows = []
    for x in verdict.lives:
        mine = [s for s in samples if s.life == x.life]
        p99 = _nanmedian(np.array([s.p99_ms for s in mine]))
        rows.append([x.life, f"{x.from_s:.0f}-{x.to_s:.0f}", f"{x.rss_end_mb:,.0f}",
                     f"{x.rss_mb_per_min:+.2f}", f"{x.backlog_mean:,.0f}",
                     f"{x.backlog_per_min:+,.0f}",
                     f"{p99:,.0f}", f"{_nanmax(np.array([s.p99_ms for s in mine])):,.0f}",
                     f"{x.cpu_mean:.2f}", f"{sum(s.sent for s in mine):,}",
                     f"{sum(s.recs for s in mine):,}"])
    return table(["life", "s", "RSS at end MB", "RSS MB/min (2nd half)",
                  "backlog mean (lag + pending)", "backlog /min (2nd half)",
                  "window p99 median ms", "window p99 max ms",
                  "CPU cores (mean)", "events sent", "recs arrived"], rows)


def write_csv(path: Path, samples: Sequence[Sample]) -> None:
    """One row per sample, CSV_FIELDS as the header; NaN as an empty cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(CSV_FIELDS)
        for sample in samples:
            out.writerow(_cell(v) for v in astuple(sample))


def plot(path: Path, samples: Sequence[Sample], restart_s: float | None, title: str) -> None:
    """RSS, backlog, p99 and CPU against minutes, one panel each, the restart marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.array([s.t_s for s in samples]) / 60.0
    panels = [(("rss_mb",), "worker RSS (MB)"), (("lag", "pending"), "backlog"),
              (("p99_ms",), "window p99 (ms)"), (("cpu",), "worker CPU (cores)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (names, label) in zip(axes, panels, strict=True):
        for name in names:
            ax.plot(t, [getattr(s, name) for s in samples], marker=".", linewidth=1,
                    label={"lag": "consumer lag (records)", "pending": "pending users"}.get(name))
        if len(names) > 1:
            ax.legend(loc="upper left", fontsize="small")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if restart_s is not None:
            ax.axvline(restart_s / 60.0, color="red", linestyle="--", linewidth=1)
    if any(s.p99_ms > 0 for s in samples):
        axes[2].set_yscale("log")
    axes[0].set_title(title + ("  (red: SIGTERM + restart)" if restart_s is not None else ""))
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def _all_below(values: Sequence[float], limit: float) -> bool | None:
    if any(math.isfinite(v) and v > limit for v in values):
        return False
    return True if values and all(math.isfinite(v) for v in values) else None


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else NAN


def _nanmax(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.isfinite(values).any() else NAN


def _nanmedian(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.isfinite(values).any() else NAN
