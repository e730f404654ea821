"""`streamrec bench {e2e,model,compress,cold,ablation,state,clients,soak,catalogue}`: measure.

Each action prints its progress, appends a dated section naming the machine to
docs/BENCHMARKS.md (plots beside it in docs/) and exits 0; figures are never
asserted; `compress`, `cold` and `ablation` measure quality, and their sections go to
docs/QUALITY.md (their flags: `bench_quality.py`). The code lives in `streamrec.bench`
(the benchmarks/ folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamrec.cli import bench_quality
from streamrec.cli.flags import add_client_flag, env_flag, int_list


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec bench` and its actions."""
    from streamrec.bench.catalogue_e2e import CatalogueOptions
    from streamrec.bench.clients import ClientsOptions
    from streamrec.bench.e2e import E2EOptions
    from streamrec.bench.model import ModelOptions
    from streamrec.bench.soak import SoakOptions
    from streamrec.bench.soak_report import Thresholds
    from streamrec.bench.state import StateOptions

    parser = sub.add_parser("bench", help="benchmarks: e2e pipeline, model stage, state, "
                            "Kafka clients, soak, 1M-item catalogue, item cold start",
                            description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    e2e = actions.add_parser(
        "e2e", help="the worker beside the Kafka client ceiling, naive, model-only, 2 workers",
        description="Preload an events topic, then read it from offset 0 with: a Kafka client "
                    "passthrough, the worker, a naive one-event-at-a-time loop, the model stage "
                    "alone and two workers; then the highest rate the worker keeps up with live "
                    "and latency at fractions of it, beside the Kafka client's floor, and a "
                    "--max-batch sweep. Starts a local broker unless --bootstrap is given.")
    d = E2EOptions()
    env_flag(e2e, "--bootstrap", "", "use this Kafka instead of a local broker")
    add_client_flag(e2e)  # every worker, runner and relay it starts inherits the choice
    e2e.add_argument("--events", type=int, default=d.events, help="events in the stream "
                     "(default %(default)s; the games log has 287k)")
    e2e.add_argument("--users", type=int, default=d.users,
                     help="users of the synthetic stream when ../shared/data is absent")
    e2e.add_argument("--partitions", type=int, default=d.partitions,
                     help="partitions of the events topic (default %(default)s)")
    e2e.add_argument("--naive-events", type=int, default=d.naive_events,
                     help="events the naive loop reads (default %(default)s)")
    e2e.add_argument("--latency-seconds", type=float, default=d.latency_seconds,
                     help="length of each latency run (default %(default)s)")
    e2e.add_argument("--latency-loads", default=",".join(map(str, d.latency_loads)),
                     help="offered loads of the latency runs, as fractions of the highest rate "
                          "the worker keeps up with live (default %(default)s)")
    e2e.add_argument("--latency-repeats", type=int, default=d.latency_repeats,
                     help="rounds of the latency runs; their medians are reported "
                          "(default %(default)s)")
    e2e.add_argument("--sweep", default=",".join(map(str, d.sweep)),
                     help="--max-batch values to sweep (default %(default)s)")
    e2e.add_argument("--sweep-events", type=int, default=d.sweep_events,
                     help="events per sweep point (default %(default)s)")
    e2e.add_argument("--model", type=Path, default=None,
                     help="checkpoint to serve (default: the games preset, trained once)")
    e2e.add_argument("--index", default=d.index,
                     help="the workers' and the model stage's --index (default %(default)s)")
    e2e.add_argument("--threads", type=int, default=d.threads,
                     help="the workers' --torch-threads (default %(default)s)")
    e2e.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                     help="extra flag for every worker process (repeatable)")
    e2e.set_defaults(handler=run_e2e)

    model = actions.add_parser(
        "model", help="encoder + search users/s by batch size; exact vs approximate index",
        description="Encoder + exact search users/s by batch size (1 ... 4096) at 1 and all "
                    "threads (and on CUDA when present); FAISS flat against IVF at 100k and 1M "
                    "synthetic items: recall@10 against exact, queries/s.")
    m = ModelOptions()
    model.add_argument("--model", type=Path, default=None,
                       help="checkpoint (default: the games preset, trained once)")
    model.add_argument("--batches", default=",".join(map(str, m.batches)),
                       help="batch sizes (default %(default)s)")
    model.add_argument("--items", default=",".join(map(str, m.catalogues)),
                       help="synthetic catalogue sizes for the index comparison "
                            "(default %(default)s)")
    model.add_argument("--seconds", type=float, default=m.seconds,
                       help="time per measurement (default %(default)s)")
    model.add_argument("--against", type=Path, default=None, metavar="CHECKPOINT",
                       help="instead: this checkpoint's model stage beside --model's, "
                            "alternated --rounds times per batch size, 1 thread (a recipe "
                            "change that must not slow serving)")
    model.add_argument("--rounds", type=int, default=m.rounds,
                       help="with --against: alternations per batch size (default "
                            "%(default)s)")
    model.set_defaults(handler=run_model)
    bench_quality.register(actions)


    state = actions.add_parser(
        "state", help="bytes per user in memory; changelog restore time",
        description="Memory of the in-memory histories at L items per user, and the time "
                    "to restore that many users from a changelog on a real broker.")
    s = StateOptions()
    env_flag(state, "--bootstrap", "", "use this Kafka instead of a local broker")
    add_client_flag(state)
    state.add_argument("--users", type=int, default=s.users,
                       help="users of the memory and restore parts (default %(default)s; "
                            "0: skip)")
    state.add_argument("--history", type=int, default=s.history,
                       help="items per user, L (default %(default)s)")
    state.add_argument("--partitions", type=int, default=s.partitions,
                       help="changelog and events partitions (default %(default)s)")
    state.add_argument("--cap-users", type=int, default=s.cap_users,
                       help="distinct users to stream through a worker with --max-users "
                            "(default %(default)s: skip; the issue's figure uses 1000000)")
    state.add_argument("--max-users", type=int, default=s.max_users,
                       help="the capped worker's --max-users, per partition (default "
                            "%(default)s)")
    state.set_defaults(handler=run_state)

    clients = actions.add_parser(
        "clients", help="the relay on kafka-python and confluent-kafka, side by side",
        description="The Kafka client's latency floor (the relay of bench e2e) on each "
                    "adapter at fixed offered loads, adapters alternating, several rounds: "
                    "p50/p95/p99 and the relay's CPU. Starts a local broker unless "
                    "--bootstrap is given.")
    c = ClientsOptions()
    env_flag(clients, "--bootstrap", "", "use this Kafka instead of a local broker")
    clients.add_argument("--clients", default=",".join(c.clients),
                         help="relay adapters, in the order run (default %(default)s)")
    clients.add_argument("--rates", default=",".join(f"{r:g}" for r in c.rates),
                         help="offered events/s (default %(default)s)")
    clients.add_argument("--seconds", type=float, default=c.seconds,
                         help="length of each run (default %(default)s)")
    clients.add_argument("--rounds", type=int, default=c.rounds,
                         help="repeats of the whole grid (default %(default)s)")
    clients.add_argument("--poll-ms", default=",".join(f"{p:g}" for p in c.poll_ms),
                         help="relay poll timeouts to try (default %(default)s)")
    clients.add_argument("--fetch-wait-ms", type=int, default=c.fetch_wait_ms,
                         help="the relay's fetch.wait.max.ms (default %(default)s)")
    clients.add_argument("--partitions", type=int, default=c.partitions,
                         help="partitions of the topics (default %(default)s)")
    clients.add_argument("--probe-client", choices=["auto", "confluent", "kafka-python"],
                         default=None, help="adapter of the event producer and latency "
                         "consumer in every run (default: env STREAMREC_KAFKA_CLIENT, else "
                         "auto)")
    clients.set_defaults(handler=run_clients)

    soak = actions.add_parser(
        "soak", help="the worker at half its load for minutes, restarted midway: growth?",
        description="A worker process against a real broker at a steady rate (--rate, else "
                    "half of its maximum live load on the soak's stream with every history "
                    "full, found first) for --minutes, SIGTERM and a start in the same group at "
                    "--restart-at; RSS, lag, window p99 and CPU sampled every --sample-s "
                    "into docs/bench/soak-<client>-<run stamp>.csv and .png, and a verdict on "
                    "growth. Starts a local broker unless --bootstrap is given.")
    k, t = SoakOptions(), Thresholds()
    env_flag(soak, "--bootstrap", "", "use this Kafka instead of a local broker")
    add_client_flag(soak)  # the worker, the producer and the latency consumer
    soak.add_argument("--minutes", type=float, default=k.minutes,
                      help="length of the soak (default %(default)s)")
    soak.add_argument("--rate", type=float, default=None,
                      help="offered events/s (default: half of the maximum live load, found "
                           "first with full histories)")
    soak.add_argument("--model", type=Path, default=None,
                      help="checkpoint to serve (default: the games preset, trained once)")
    soak.add_argument("--restart-at", type=float, default=k.restart_at,
                      help="share of the run at which the worker restarts (default "
                           "%(default)s; 0: never)")
    soak.add_argument("--sample-s", type=float, default=k.sample_s,
                      help="sampling window in seconds (default %(default)s)")
    soak.add_argument("--measure-events", type=int, default=k.measure_events,
                      help="events of the throughput run that gives the search its first "
                           "guess (default %(default)s)")
    soak.add_argument("--probe-s", type=float, default=k.probe_s,
                      help="seconds of each probe of the maximum live load (default "
                           "%(default)s)")
    soak.add_argument("--empty-start", dest="full_start", action="store_false",
                      help="start the first worker from empty state (default: every user's "
                           "history full, as the restarted worker restores it)")
    soak.add_argument("--events", type=int, default=k.events,
                      help="distinct events the producer cycles through (default %(default)s)")
    soak.add_argument("--partitions", type=int, default=k.partitions,
                      help="partitions of the events topic (default %(default)s)")
    soak.add_argument("--index", default=k.index, help="the worker's --index (default "
                      "%(default)s)")
    soak.add_argument("--threads", type=int, default=k.threads,
                      help="the worker's --torch-threads (default %(default)s)")
    soak.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                      help="extra flag for the worker process (repeatable)")
    soak.add_argument("--max-rss-slope", type=float, default=t.rss_mb_per_min,
                      help="MB/min over the second half of each worker life that counts as "
                           "growth (default %(default)s)")
    soak.add_argument("--max-backlog-slope", type=float, default=t.backlog_s_per_min,
                      help="backlog (lag + pending users) growth, in seconds of offered "
                           "events per minute, that counts as growth (default %(default)s)")
    soak.add_argument("--max-p99-factor", type=float, default=t.p99_factor,
                      help="last windows' p99 over the first windows' that counts as growth "
                           "(default %(default)s)")
    soak.set_defaults(handler=run_soak)

    catalogue = actions.add_parser(
        "catalogue", help="the worker on a 1M-item model beside the 24k one; a hot swap of it",
        description="The games model and its item table grown to --items (cached, with its "
                    "approximate index stored): the large model's maximum live load, then "
                    "latency runs at half of it, models alternating, --rounds rounds: p99 of "
                    "the large model against the small one's; then a new version of the "
                    "large model hot-swapped under that load: the longest gap between two "
                    "polls of the worker's loop and the latency before, during and after. "
                    "Starts a local broker unless --bootstrap is given.")
    g = CatalogueOptions()
    env_flag(catalogue, "--bootstrap", "", "use this Kafka instead of a local broker")
    add_client_flag(catalogue)  # the workers, the producer and the latency consumer
    catalogue.add_argument("--items", type=int, default=g.items,
                           help="items of the grown model (default %(default)s)")
    catalogue.add_argument("--seconds", type=float, default=g.seconds,
                           help="length of each latency run, and of the hot swap's windows "
                                "before and after it together (default %(default)s)")
    catalogue.add_argument("--rounds", type=int, default=g.rounds,
                           help="rounds of latency runs, models alternating; the medians "
                                "are compared (default %(default)s; 0: the hot swap alone)")
    catalogue.add_argument("--measure-events", type=int, default=g.measure_events,
                           help="events of the throughput run from offset 0, whose rate "
                                "starts the search for the maximum live load (default "
                                "%(default)s)")
    catalogue.add_argument("--rate", type=float, default=None,
                           help="offered events/s of every run (default: half of the large "
                                "model's maximum live load, measured first)")
    catalogue.add_argument("--partitions", type=int, default=g.partitions,
                           help="partitions of the events topics (default %(default)s)")
    catalogue.add_argument("--no-report", action="store_true",
                           help="print the figures, leave docs/BENCHMARKS.md alone (a trial run)")
    catalogue.set_defaults(handler=run_catalogue)


def run_e2e(args: argparse.Namespace) -> int:
    """Run `bench e2e`; exit 1 if a user's last event got no recommendation."""
    from streamrec.bench.e2e import E2EOptions, run

    figures = run(E2EOptions(
        events=args.events, users=args.users, partitions=args.partitions,
        naive_events=args.naive_events, latency_seconds=args.latency_seconds,
        latency_loads=tuple(float(x) for x in args.latency_loads.split(",") if x.strip()),
        latency_repeats=args.latency_repeats,
        sweep=int_list(args.sweep), sweep_events=args.sweep_events, model=args.model,
        bootstrap=args.bootstrap or None, worker_args=tuple(args.worker_arg),
        index=args.index, threads=args.threads, kafka_client=args.kafka_client))
    return 1 if figures["b_users_missing"] or figures["e_users_missing"] else 0


def run_model(args: argparse.Namespace) -> int:
    """Run `bench model`."""
    from streamrec.bench.model import ModelOptions, run

    run(ModelOptions(model=args.model, batches=int_list(args.batches),
                     catalogues=int_list(args.items), seconds=args.seconds,
                     against=args.against, rounds=args.rounds))
    return 0


def run_state(args: argparse.Namespace) -> int:
    """Run `bench state`; exit 1 if the restore lost users."""
    from streamrec.bench.state import StateOptions, run

    ok = run(StateOptions(users=args.users, history=args.history, partitions=args.partitions,
                          bootstrap=args.bootstrap or None, cap_users=args.cap_users,
                          max_users=args.max_users))
    return 0 if ok else 1


def run_clients(args: argparse.Namespace) -> int:
    """Run `bench clients`."""
    from streamrec.bench.clients import ClientsOptions, run

    run(ClientsOptions(
        clients=tuple(x.strip() for x in args.clients.split(",") if x.strip()),
        rates=tuple(float(x) for x in args.rates.split(",") if x.strip()),
        seconds=args.seconds, rounds=args.rounds,
        poll_ms=tuple(float(x) for x in args.poll_ms.split(",") if x.strip()),
        fetch_wait_ms=args.fetch_wait_ms, partitions=args.partitions,
        probe_client=args.probe_client, bootstrap=args.bootstrap or None))
    return 0


def run_soak(args: argparse.Namespace) -> int:
    """Run `bench soak`; the verdict is printed and written, not an exit code."""
    from streamrec.bench.soak import SoakOptions, run
    from streamrec.bench.soak_report import Thresholds

    run(SoakOptions(
        minutes=args.minutes, rate=args.rate, restart_at=args.restart_at,
        sample_s=args.sample_s, measure_events=args.measure_events, probe_s=args.probe_s,
        full_start=args.full_start, events=args.events,
        partitions=args.partitions, model=args.model, index=args.index, threads=args.threads,
        worker_args=tuple(args.worker_arg), kafka_client=args.kafka_client,
        bootstrap=args.bootstrap or None,
        thresholds=Thresholds(rss_mb_per_min=args.max_rss_slope,
                              backlog_s_per_min=args.max_backlog_slope,
                              p99_factor=args.max_p99_factor)))
    return 0


def run_catalogue(args: argparse.Namespace) -> int:
    """Run `bench catalogue`; the verdicts are printed and written, not an exit code."""
    from streamrec.bench.catalogue_e2e import CatalogueOptions, run

    run(CatalogueOptions(
        items=args.items, seconds=args.seconds, rounds=args.rounds,
        measure_events=args.measure_events, partitions=args.partitions, rate=args.rate,
        kafka_client=args.kafka_client, bootstrap=args.bootstrap or None,
        report=not args.no_report))
    return 0
