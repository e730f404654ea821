"""What every benchmark shares: the machine it ran on, a broker, the report file.

A figure without its machine means nothing, so `machine()` names the CPU, cores,
memory, GPU and the versions of everything in the path (Python, torch, faiss,
kafka-python, confluent-kafka, the Kafka broker jars, the streamrec commit). `broker()` gives a
bootstrap address: `$KAFKA_BOOTSTRAP` when set, else a local broker on free ports
that is stopped afterwards. `append_section()` adds one dated section to
docs/BENCHMARKS.md, newest last, so the file keeps every run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import re
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig, project_dir

logger = logging.getLogger(__name__)

ROOT = project_dir()
DOCS = ROOT / "docs"  # the report and its plots (tests point it elsewhere)
HEADER = ("# Benchmarks\n\nFigures as measured, machine named; each section is one run "
          "of a `streamrec bench` command (or a script in `benchmarks/`), newest last.\n")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def broker(bootstrap: str | None = None) -> Iterator[str]:
    """`bootstrap`, `$KAFKA_BOOTSTRAP`, or a fresh local broker stopped on exit."""
    given = bootstrap or os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    local = LocalBroker(BrokerConfig(port=port, controller_port=controller,
                                     data_dir=Path(tempfile.mkdtemp(prefix="streamrec-bench-"))))
    print(f"[bench] starting a local Kafka broker on 127.0.0.1:{port}", flush=True)
    try:
        yield local.start(timeout_s=180)
    finally:
        local.stop()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    return 0.0


def _kafka_version() -> str:
    libs = ROOT / ".cache" / "kafka" / "libs"
    for jar in sorted(libs.glob("kafka_2.13-*.jar")):
        found = re.match(r"kafka_2\.13-([\d.]+)\.jar", jar.name)
        if found:
            return found.group(1)
    return "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine(device: str = "cpu") -> str:
    """One line naming the machine and the versions a figure depends on."""
    import torch

    gpu = "no GPU"
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    faiss = _version("faiss-cpu")
    if faiss == "absent":
        faiss = _version("faiss-gpu-cu12")
    return (f"{_cpu_model()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB, {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, faiss {faiss}, "
            f"kafka-python {_version('kafka-python')}, "
            f"confluent-kafka {_version('confluent-kafka')}, Kafka {_kafka_version()}, "
            f"numpy {_version('numpy')}; streamrec {_commit()}; device {device}")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def append_section(title: str, body: str) -> None:
    """Add `## <date> <title>` with `body` to the end of docs/BENCHMARKS.md."""
    report = DOCS / "BENCHMARKS.md"
    if not report.exists():
        report.write_text(HEADER, encoding="utf-8")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with report.open("a", encoding="utf-8") as f:
        f.write(f"\n## {stamp}: {title}\n\n{body.rstrip()}\n")
    print(f"[bench] appended '{title}' to {report}", flush=True)


def put_section(text: str, heading: str, section: str, before: str) -> str:
    """`text` (a markdown document) with `section`, which starts with `heading`, in place
    of any older section under that heading (up to the next `## ` heading), else
    inserted before the line `before`, else appended."""
    start = text.find("\n" + heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end:] if end >= 0 else "\n")
    if before in text:
        return text.replace(before, section + before, 1)
    return text.rstrip("\n") + "\n" + section


def put_json_section(text: str, path: Path, render: Callable[[Any], str], heading: str,
                     before: str) -> str:
    """`text` with the section `render` makes of the JSON at `path` in place of any
    older one (`put_section`); `text` unchanged when `path` is absent (nothing measured)."""
    if not path.is_file():
        return text
    section = render(json.loads(path.read_text(encoding="utf-8")))
    return put_section(text, heading, section, before)


def save_quality_section(doc: Any, json_name: str,
                         with_section: Callable[[str, Path], str]) -> Path:
    """Keep `doc` as JSON at docs/`json_name` and put its section into docs/QUALITY.md
    (`with_section(text, json_path)`); the JSON is what QUALITY.md's regeneration
    (`quality_games.py`) renders the section from again."""
    path, quality_md = DOCS / json_name, DOCS / "QUALITY.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if quality_md.is_file():
        text = quality_md.read_text(encoding="utf-8")
        quality_md.write_text(with_section(text, path), encoding="utf-8")
    return path


# When this process started, in UTC: what names the files of its run
RUN_STAMP = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def run_file(name: str, suffix: str = ".png") -> Path:
    """Where a file of this run's report goes (docs/bench/<name>-<run stamp><suffix>).

    Each run's files get names of their own: BENCHMARKS.md keeps every run's section,
    and a later run must not replace the plot an earlier section shows."""
    folder = DOCS / "bench"  # read now: tests point DOCS elsewhere
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{RUN_STAMP}{suffix}"


def link(path: Path) -> str:
    """`path` (under docs/) as BENCHMARKS.md links it."""
    return path.relative_to(DOCS).as_posix()
