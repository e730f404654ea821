"""Regenerate docs/QUALITY.md: train on Amazon Games, evaluate, plot, write the report.

    python benchmarks/quality_games.py                  # train seeds 42, 1, 2 (~8 min, 2 cores)
    python benchmarks/quality_games.py --skip-train     # rebuild the report from --out
    python benchmarks/quality_games.py --warm-start     # + warm-started vs full retrain

Training is exactly `streamrec train --data ../shared/data/games.txt --format sasrec
--preset games --out runs/games`; this script runs that command, then reads the
run's `results.json` and checkpoint `config.json` to write the table, the
learning curve (docs/quality_curve.png) and the machine it ran on. `--seeds` trains
the same command with other seeds beside it (`--out`-seedN, two at a time: each
process trains on one thread) and reports mean and spread; the first seed is the
one the tables and the curve show. `--warm-start`
also trains a "previous version" on the log without each user's last 2 items and
warm-starts from it on the full log (`warm_start.json` in --out keeps the figures,
so `--skip-train` rebuilds that section too; `--skip-train --warm-start` reruns only
the warm starts, against the full run already at --out). It exits
cleanly (status 0, a message) when the data folder is absent: the project must
never depend on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from streamrec.bench.cold_report import with_cold_section
from streamrec.bench.compress_quality import with_compression_section
from streamrec.bench.quality_report import machine, plot_curve, render, render_warm
from streamrec.bench.train_ablation_report import with_ablation_section

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "games.txt"
WARM_EPOCHS = (1, 3, 6)  # warm starts measured besides the CLI's default (no --epochs)
PARALLEL = 2  # seed runs at a time (the games preset trains on one thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "games")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--skip-train", action="store_true", help="report on an existing run")
    parser.add_argument("--warm-start", action="store_true",
                        help="also measure warm-started retrains against the full one")
    parser.add_argument("--seeds", default="42,1,2",
                        help="comma-separated seeds; the first is the reported run")
    parser.add_argument("train_flags", nargs="*", help="extra `streamrec train` flags")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: {args.data} not found (the Games benchmark needs ../shared/data)")
        return 0
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    command = ["train", "--data", str(args.data), "--format", "sasrec", "--preset", "games",
               "--out", str(args.out), "--seed", str(seeds[0]), *args.train_flags]
    runs = {seed: args.out if i == 0 else args.out.with_name(f"{args.out.name}-seed{seed}")
            for i, seed in enumerate(seeds)}
    if not args.skip_train:
        code = train_seeds(command, runs)
        if code:
            return code
    if args.warm_start:  # against the full run at --out (trained now or before)
        code = warm_start_experiment(args.data, args.out)
        if code:
            return code
    results = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
    config = json.loads((args.out / "config.json").read_text(encoding="utf-8"))
    args.docs.mkdir(parents=True, exist_ok=True)
    plot_curve(config["meta"]["history"], args.docs / "quality_curve.png")
    shown = ["streamrec", *command]
    shown[shown.index(str(args.data))] = "../shared/data/games.txt"
    shown[shown.index(str(args.out))] = "runs/games"
    warm = args.out / "warm_start.json"
    per_seed = {seed: _run_row(run) for seed, run in runs.items()
                if (run / "results.json").is_file()}
    text = render(results, config, " ".join(shown), per_seed)
    if warm.is_file():
        text = text.replace("\n## How the configuration was chosen",
                            render_warm(json.loads(warm.read_text(encoding="utf-8")))
                            + "\n## How the configuration was chosen")
    text = with_compression_section(text)  # `bench compress`'s figures, when measured
    text = with_cold_section(text)  # `bench cold`'s, likewise
    text = with_ablation_section(text)  # `bench ablation`'s
    (args.docs / "QUALITY.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def streamrec(command: list[str]) -> int:
    """Run `streamrec COMMAND` in its own process (benchmarks sit below the CLI)."""
    return subprocess.run([sys.executable, "-m", "streamrec.cli.main", *command]).returncode


def train_seeds(command: list[str], runs: dict[int, Path]) -> int:
    """Train `command` (with `--out` and `--seed`) once per seed of `runs` (seed -> its
    --out), PARALLEL at a time."""
    commands = []
    for seed, run in runs.items():
        cmd = list(command)
        cmd[cmd.index("--out") + 1], cmd[cmd.index("--seed") + 1] = str(run), str(seed)
        commands.append(cmd)
    active: list[subprocess.Popen] = []
    code = 0
    for cmd in commands:
        while len(active) >= PARALLEL:
            finished = active.pop(0).wait()
            code = code or finished
        logger.info("training: streamrec %s", " ".join(cmd))
        active.append(subprocess.Popen([sys.executable, "-m", "streamrec.cli.main", *cmd,
                                        "--no-progress"]))
    for process in active:
        finished = process.wait()
        code = code or finished
    return code


def warm_start_experiment(data: Path, full_run: Path) -> int:
    """Previous version without each user's last 2 items, then warm starts on the full log;
    writes `warm_start.json` (these runs and the full retrain `full_run`) into `full_run`."""
    work = full_run.parent / f"{full_run.name}-warm"
    work.mkdir(parents=True, exist_ok=True)
    older = work / "games-without-last-2.txt"
    by_user: dict[str, list[str]] = {}
    for line in data.read_text(encoding="utf-8").splitlines():
        if line.strip():
            by_user.setdefault(line.split()[0], []).append(line)
    older.write_text("".join(f"{line}\n" for lines in by_user.values() for line in lines[:-2]),
                     encoding="utf-8")
    common = ["--format", "sasrec", "--preset", "games", "--no-progress"]
    warm = ["train", "--data", str(data), *common, "--warm-start", str(work / "base")]
    runs = {"base": ["train", "--data", str(older), *common, "--out", str(work / "base")],
            "warm-default": [*warm, "--out", str(work / "warm-default")]}
    rows: dict[str, dict] = {}
    while len(rows) < len(runs):
        name = next(n for n in runs if n not in rows)
        shutil.rmtree(work / name, ignore_errors=True)
        logger.info("warm-start experiment: %s", " ".join(runs[name]))
        code = streamrec(runs[name])
        if code:
            return code
        rows[name] = _run_row(work / name)
        if name == "warm-default":  # the epochs the CLI picks without --epochs
            runs |= {f"warm-{n}": [*warm, "--epochs", str(n), "--out", str(work / f"warm-{n}")]
                     for n in WARM_EPOCHS if n != rows[name]["epochs"]}
    rows["full"] = _run_row(full_run)
    shown = {name: " ".join(["streamrec", *c]).replace(str(data), "../shared/data/games.txt")
             .replace(f"{ROOT}/", "") for name, c in runs.items()}
    doc = {"default_epochs": rows["warm-default"]["epochs"], "machine": machine(), "runs": rows,
           "commands": shown}
    (full_run / "warm_start.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return 0


def _run_row(run: Path) -> dict:
    """The figures of one `streamrec train` run folder."""
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    meta = json.loads((run / "config.json").read_text(encoding="utf-8"))["meta"]
    sasrec = results["results"]["sasrec"]
    return {"epochs": results["epochs"], "train_seconds": results["train_seconds"],
            "full": sasrec["full"], "sampled": sasrec["sampled"],
            "items": meta["data"]["items"], "warm_start": meta.get("warm_start")}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
