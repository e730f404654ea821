"""`streamrec demo`: the whole path on one laptop, live.

Starts a local Kafka broker (unless `--bootstrap` names one), trains a small encoder
on a generated interaction log (once; later runs reuse the checkpoint), runs the
worker, replays a second generated log into the events topic at a steady rate, and
prints recommendations as they arrive on the recommendations topic. Ctrl-C (or
SIGTERM, or `--duration`) stops everything cleanly, broker included.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from streamrec.cli.flags import add_client_flag
from streamrec.common.settings import env_default

if TYPE_CHECKING:
    from streamrec.kafka_io.local.broker import LocalBroker
    from streamrec.kafka_io.port import Consumer, Producer

logger = logging.getLogger(__name__)

DEMO_USERS = 2000
TRAIN_SEED, REPLAY_SEED = 0, 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec demo`."""
    p = sub.add_parser("demo", help="local broker + trained model + worker + live output",
                       description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path(".cache/demo"),
                   help="where the demo keeps its data, model and broker (default %(default)s)")
    p.add_argument("--bootstrap", default=env_default("--bootstrap", ""),
                   help="use this Kafka instead of starting a local broker")
    add_client_flag(p)
    p.add_argument("--broker-port", type=int, default=9092, help="local broker client port")
    p.add_argument("--controller-port", type=int, default=9093,
                   help="local broker controller port")
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint to serve (default: train one on the demo log)")
    p.add_argument("--retrain", action="store_true", help="train again even if a model exists")
    p.add_argument("--rate", type=float, default=200.0, help="events per second to replay")
    p.add_argument("--metrics-port", type=int, default=env_default("--metrics-port", 9108),
                   help="port of the worker's /metrics (default %(default)s)")
    p.add_argument("--print-every", type=float, default=1.0,
                   help="seconds between printed recommendations")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0 = until Ctrl-C)")
    p.set_defaults(handler=run)


def demo_model(workdir: Path, retrain: bool) -> Path:
    """The demo checkpoint: trained once on the generated log, then reused."""
    from streamrec.cli.train import train_and_save
    from streamrec.encoder.checkpoint import load_checkpoint
    from streamrec.encoder.errors import CheckpointError
    from streamrec.encoder.synthetic import generate, write_sasrec

    model_dir = workdir / "model"
    if not retrain and (model_dir / "config.json").exists():
        try:
            load_checkpoint(model_dir)
            print(f"[demo] using the trained model in {model_dir} (--retrain to train again)")
            return model_dir
        except CheckpointError as exc:
            print(f"[demo] {exc}; training again")
    data = write_sasrec(workdir / "train.txt", generate(DEMO_USERS, seed=TRAIN_SEED))
    print(f"[demo] training the encoder on {data} (demo preset, seconds on a CPU)")
    train_and_save(data, "sasrec", model_dir, preset_name="demo")
    return model_dir


def run(args: argparse.Namespace) -> int:
    """Broker, model, worker, replay, live output; clean shutdown on the way out."""
    from streamrec.kafka_io.clients import make_producer
    from streamrec.worker.app import Worker
    from streamrec.worker.config import WorkerConfig

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    _raise_on_sigterm()
    broker = None
    threads: list[threading.Thread] = []
    worker = None
    producer = None
    stop = threading.Event()
    try:
        broker, bootstrap = _kafka(args, workdir)
        print(f"[demo] Kafka at {bootstrap}")
        model_dir = args.model or demo_model(workdir, args.retrain)
        config = WorkerConfig(model_dir=model_dir, bootstrap=bootstrap,
                              metrics_port=args.metrics_port, group_id="streamrec-demo")
        worker = Worker(config)
        threads.append(_start(worker.run, "worker"))
        watcher = _recommendation_consumer(bootstrap, config.recommendations_topic,
                                           config.partitions)
        recent: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=4))
        producer = make_producer(bootstrap, "streamrec-demo-replay")
        threads.append(_start(
            lambda: _replay_rounds(producer, config.events_topic, args.rate, stop, recent),
            "replay"))
        _print_banner(bootstrap, config, args.metrics_port, args.rate)
        _watch(watcher, recent, args.print_every, args.duration, stop, threads)
        if not all(t.is_alive() for t in threads):
            print("[demo] the worker or the replay stopped unexpectedly (see the log above)")
            return 1
        return 0
    except KeyboardInterrupt:
        print("\n[demo] stopping ...")
        return 0
    finally:
        stop.set()
        if worker is not None:
            worker.stop()
        for t in threads:
            t.join(timeout=60)
        if producer is not None:
            producer.close(10)
        if broker is not None:
            broker.stop()
            print("[demo] broker stopped")


def _kafka(args: argparse.Namespace, workdir: Path) -> tuple[LocalBroker | None, str]:
    """(the broker the demo started or None, bootstrap address)."""
    from streamrec.kafka_io.local.broker import LocalBroker
    from streamrec.kafka_io.local.config import BrokerConfig

    if args.bootstrap:
        return None, args.bootstrap
    print("[demo] starting a local Kafka broker (KRaft, single node) ...")
    # Each demo starts from empty topics: old events would give users stale walks.
    shutil.rmtree(workdir / "kafka", ignore_errors=True)
    broker = LocalBroker(BrokerConfig(port=args.broker_port, controller_port=args.controller_port,
                                      data_dir=workdir / "kafka"))
    return broker, broker.start()


def _replay_rounds(producer: Producer, topic: str, rate: float, stop: threading.Event,
                   recent: dict[str, deque[str]]) -> None:
    """Replay a newly generated walk of every demo user, round after round, until `stop`."""
    from streamrec.encoder.data import Interactions
    from streamrec.encoder.synthetic import generate
    from streamrec.eventlog.replay import interleave, replay

    round_ = 0
    while not stop.is_set():
        pairs = generate(DEMO_USERS, seed=REPLAY_SEED + round_)
        data = Interactions.from_pairs([u for u, _ in pairs], [i for _, i in pairs])
        replay(producer, topic, interleave(data, seed=round_), rate, stop=stop,
               on_send=lambda u, i: recent[u].append(i))
        round_ += 1


def _raise_on_sigterm() -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _start(target: object, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def _recommendation_consumer(bootstrap: str, topic: str, partitions: int) -> Consumer:
    """A group-less consumer of every partition of `topic`, from its end: whatever is
    published from here on."""
    from streamrec.kafka_io.clients import ensure_topics, make_consumer
    from streamrec.kafka_io.port import OFFSET_END, TopicPartition

    ensure_topics(bootstrap, {topic: partitions})  # the worker may not have created it yet
    consumer = make_consumer(bootstrap, None, "streamrec-demo-watch")
    found = consumer.partitions_for(topic) or set()
    consumer.assign({TopicPartition(topic, p): OFFSET_END for p in sorted(found)})
    return consumer


def _print_banner(bootstrap: str, config: object, metrics_port: int, rate: float) -> None:
    print(f"""
[demo] live: replaying generated events at {rate:.0f}/s
  events           -> topic '{config.events_topic}'
  recommendations  <- topic '{config.recommendations_topic}'
  dead letters     <- topic '{config.dead_letter_topic}'
  metrics          http://localhost:{metrics_port}/metrics
  try              kcat -b {bootstrap} -C -t {config.recommendations_topic} -o end
  Ctrl-C stops the replay, the worker and the broker.
""")


def _watch(consumer: Consumer, recent: dict[str, deque[str]], every: float, duration: float,
           stop: threading.Event, threads: list[threading.Thread]) -> None:
    """Print the newest recommendation every `every` seconds until `duration`/Ctrl-C.

    Returns early when the worker or replay thread died.
    """
    deadline = time.monotonic() + duration if duration > 0 else float("inf")
    next_print, received = 0.0, 0
    try:
        while time.monotonic() < deadline and not stop.is_set():
            if not all(t.is_alive() for t in threads):
                return
            latest = None
            for records in consumer.poll(0.2).values():
                received += len(records)
                latest = records[-1]
            if latest is not None and time.monotonic() >= next_print:
                print(_format(json.loads(latest.value), recent, received))
                next_print = time.monotonic() + every
    finally:
        consumer.close()


def _format(rec: dict, recent: dict[str, deque[str]], received: int) -> str:
    """One readable block per recommendation."""
    user = rec["user_id"]
    last = " ".join(recent.get(user, ())) or "-"
    items = "  ".join(f"{x['item_id']} ({x['score']:.2f})" for x in rec["items"][:6])
    expl = rec["explanation"]
    if expl["strategy"] == "popular":
        why = "cold start: most popular items"
    else:
        why = "attended: " + ", ".join(f"{h['item_id']} {h['weight']:.2f}"
                                       for h in expl["history"])
    lag_ms = rec["produced_ts"] - rec["event_ts"]
    return (f"{user}  last: {last}\n    recs: {items}\n"
            f"    {why}   [{lag_ms} ms after the event, {received} recs so far]")
