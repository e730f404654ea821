"""The distribution maps every package folder into the `streamrec` namespace.

Checked for both install kinds: the editable one the tests run from, and a normal
(non-editable) install into a fresh target directory, which must ship every
subpackage (the CLI's commands included) and nothing at the top of site-packages
but `streamrec`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("streamrec.cli.main", "streamrec.cli.demo", "streamrec.eventlog.replay",
           "streamrec.worker.app", "streamrec.worker.state.durable", "streamrec.encoder.model",
           "streamrec.index.faiss_index", "streamrec.kafka_io.local.broker",
           "streamrec.common.settings")


def test_editable_install_imports_from_the_checkout() -> None:
    import streamrec.cli.main

    assert Path(streamrec.cli.main.__file__).resolve() == ROOT / "cli" / "main.py"


@pytest.mark.slow
def test_normal_install_ships_every_package_under_streamrec(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    top = sorted(p.name for p in target.iterdir()
                 if p.name not in ("bin", "__pycache__") and not p.name.endswith(".dist-info"))
    assert top == ["streamrec"]
    code = "import importlib, sys; print('\\n'.join(importlib.import_module(m).__file__ " \
           "for m in sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code, *MODULES], check=True, env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout
    files = out.split()
    assert len(files) == len(MODULES)
    assert all(Path(f).is_relative_to(target) for f in files), files
