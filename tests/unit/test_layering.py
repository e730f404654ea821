"""Imports flow one way: cli -> bench -> eventlog -> worker -> encoder, index, kafka_io -> common.

Read from the source with `ast` (every import, also those inside functions and under
TYPE_CHECKING), so an import against the flow fails here before it becomes a
circle. Only `kafka_io` may import a Kafka client library (kafka-python or
confluent-kafka): the rest of the code goes through its port. Also checked: no two
modules import each other through any path, and the publisher and the other light
stages do not load torch or faiss when imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {  # folder -> streamrec package
    "cli": "cli", "benchmarks": "bench", "eventlog": "eventlog", "worker": "worker",
    "encoder": "encoder", "index": "index", "kafka_io": "kafka_io", "common": "common",
}
# What each package may import, besides itself.
ALLOWED = {
    "cli": {"bench", "eventlog", "worker", "encoder", "index", "kafka_io", "common"},
    "bench": {"eventlog", "worker", "encoder", "index", "kafka_io", "common"},
    "eventlog": {"worker", "encoder", "kafka_io", "common"},
    "worker": {"encoder", "index", "kafka_io", "common"},
    "encoder": {"common"},
    "index": {"common"},
    "kafka_io": {"common"},
    "common": set(),
}


FOLDERS = {package: folder for folder, package in PACKAGES.items()}


def package_of(path: Path) -> str:
    return PACKAGES[path.relative_to(ROOT).parts[0]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return "streamrec." + ".".join(parts)


def streamrec_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `streamrec.*` import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("streamrec.")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamrec."):
            base = node.module or ""
            # `from streamrec.cli import worker` imports the module streamrec.cli.worker
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if module_file(sub) else base))
    return found


def module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    if not parts or parts[0] not in FOLDERS:
        return None
    base = ROOT.joinpath(FOLDERS[parts[0]], *parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def source_files() -> list[Path]:
    files = [f for folder in PACKAGES for f in (ROOT / folder).rglob("*.py")]
    assert len(files) > 40, "the package folders were not found"
    return sorted(files)


def test_every_import_flows_down_the_layers() -> None:
    wrong = []
    for path in source_files():
        package = package_of(path)
        for line, target in streamrec_imports(path):
            target_package = target.split(".")[1]
            if target_package != package and target_package not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} "
                             f"({package} may import {sorted(ALLOWED[package]) or 'nothing'})")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_every_import_names_a_module_that_exists() -> None:
    missing = [f"{p.relative_to(ROOT)}:{line} {target}" for p in source_files()
               for line, target in streamrec_imports(p) if module_file(target) is None]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_no_module_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    for path in source_files():
        name = module_name(path)
        graph[name] = {t for _, t in streamrec_imports(path)
                       if t != name and not name.startswith(t + ".")}  # a package's own face
    circles = [scc for scc in strongly_connected(graph) if len(scc) > 1]
    assert not circles, f"modules importing each other: {circles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative enough for a few hundred modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            out.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


CLIENT_LIBRARIES = ("kafka", "confluent_kafka")


def client_library_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a Kafka client library in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        found += [(node.lineno, n) for n in names if n.split(".")[0] in CLIENT_LIBRARIES]
    return found


def test_only_the_kafka_port_imports_a_client_library() -> None:
    """The worker, state, tools and bench talk to Kafka through `streamrec.kafka_io`."""
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in source_files()
             if package_of(p) != "kafka_io" for line, name in client_library_imports(p)]
    assert not wrong, "client libraries imported outside kafka_io:\n" + "\n".join(wrong)


def test_the_checker_catches_a_client_library_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef f():\n    from kafka.errors import KafkaError\n"
                   "import confluent_kafka.admin as a\nfrom kafka_io import x\n",
                   encoding="utf-8")
    assert sorted(client_library_imports(bad)) == [(3, "kafka.errors"),
                                                   (4, "confluent_kafka.admin")]


def test_the_checker_catches_an_import_against_the_flow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from streamrec.cli.main import main\n", encoding="utf-8")
    assert streamrec_imports(bad) == [(2, "streamrec.cli.main")]
    assert "cli" not in ALLOWED["worker"]
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"], ["c"]]


@pytest.mark.parametrize("module", ["streamrec.worker.publish", "streamrec.worker.validate",
                                    "streamrec.worker.batcher", "streamrec.worker.commits",
                                    "streamrec.worker.ingest", "streamrec.worker.rebalance",
                                    "streamrec.kafka_io.clients", "streamrec.cli.main"])
def test_light_modules_do_not_load_torch_or_faiss(module: str) -> None:
    code = (f"import sys, {module}; "
            "print(','.join(m for m in ('torch', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"


def test_the_cli_parser_does_not_load_torch_or_faiss() -> None:
    """Every command's flags and defaults are built for `streamrec --help` and before any
    action runs: loading torch there costs every command, even `broker stop`, ~1.5 s."""
    code = ("import sys; from streamrec.cli.main import build_parser; build_parser(); "
            "print(','.join(m for m in ('torch', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120).stdout.strip()
    assert out == "", f"building the CLI's parser loaded {out}"
