"""`streamrec demo` end to end (README command 1) against the session's broker.

Trains the demo model from scratch in a temp workdir, serves it, replays the
generated log, and must print live recommendations that follow the log's rule
(the top item is mostly from the genre the user is walking), recommend a new item
by its features before any event names it, then exit 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]


def test_demo_trains_serves_and_prints_sensible_live_recommendations(
    kafka_bootstrap: str, tmp_path: Path,
) -> None:
    metrics_port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "demo", "--bootstrap", kafka_bootstrap,
         "--workdir", str(tmp_path), "--duration", "15", "--print-every", "0.5",
         "--metrics-port", str(metrics_port)],
        capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert (tmp_path / "model" / "config.json").exists()
    assert f"http://localhost:{metrics_port}/metrics" in out
    blocks = re.findall(r"last: ([^\n]+)\n\s+recs: (\S+)", out)
    assert len(blocks) >= 5, out[-4000:]
    same_genre = sum(last.split()[-1].split("-")[0] == top.split("-")[0] for last, top in blocks)
    assert same_genre / len(blocks) >= 0.6, blocks
    assert "attended:" in out
    assert "published a catalogue of" in out
    retired = re.findall(r"named by (\d+) of (\d+) recommendations since the worker read it",
                         out)
    assert retired, out[-4000:]  # the demo retired an item while it ran, and said so
    assert all(naming == "0" for naming, _ in retired), retired
    assert int(retired[-1][1]) > 0
    # An item published with features and no events is recommended by its content, to
    # the users of its genre, soon after its record.
    arrived = re.findall(r"new item (\S+) \(no events\): in (\d+) recommendations \((\d+) to "
                         r"users most attending to (\w+)\), the first (\d+) ms", out)
    assert arrived, out[-4000:]
    item, naming, fans, genre, first_ms = arrived[-1]
    assert item == f"{genre}-new"
    assert int(naming) > 0
    assert int(fans) >= 0.8 * int(naming)
    assert int(first_ms) <= 1000
