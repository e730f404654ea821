"""`streamrec demo`: the whole path on one laptop, live.

Starts a local Kafka broker (unless `--bootstrap` names one), trains a small encoder
on a generated interaction log (once; later runs reuse the checkpoint), runs the
worker, replays a second generated log into the events topic at a steady rate, and
prints recommendations as they arrive on the recommendations topic. The item
catalogue goes to a demo items topic first (every item with its genre and a title as
features, which the model was trained with: it has a content tower). A few seconds in
the demo publishes a new item, with features and no events, and counts the
recommendations that name it (the worker embeds it by its content); later it retires
the item recommended most so far and counts how many recommendations name it after
the worker read that. Ctrl-C (or SIGTERM, or `--duration`) stops everything cleanly,
broker included.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from streamrec.cli.flags import add_client_flag
from streamrec.common.settings import env_default
from streamrec.encoder.features import ItemFeatures

if TYPE_CHECKING:
    from streamrec.kafka_io.local.broker import LocalBroker
    from streamrec.kafka_io.port import Consumer, Producer
    from streamrec.worker.app import Worker

logger = logging.getLogger(__name__)

DEMO_USERS = 2000
TRAIN_SEED, REPLAY_SEED = 0, 1
# Its own items topic: a demo against your Kafka (--bootstrap) must not retire your items.
DEMO_ITEMS_TOPIC = "streamrec-demo-items"
RETIRE_AFTER_S = 6.0  # when the demo retires the item recommended most so far
NEW_ITEM_AFTER_S = 3.0  # when the demo publishes an item nobody has touched


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
    from streamrec.cli.train_evaluate import train_and_save
    from streamrec.encoder.checkpoint import load_checkpoint
    from streamrec.encoder.errors import CheckpointError
    from streamrec.encoder.synthetic import generate, write_sasrec

    model_dir = workdir / "model"
    if not retrain and (model_dir / "config.json").exists():
        try:
            if load_checkpoint(model_dir).content is not None:
                print(f"[demo] using the trained model in {model_dir} (--retrain to train "
                      "again)")
                return model_dir
            print("[demo] the model in the workdir has no content tower; training again")
        except CheckpointError as exc:
            print(f"[demo] {exc}; training again")
    pairs = generate(DEMO_USERS, seed=TRAIN_SEED)
    data = write_sasrec(workdir / "train.txt", pairs)
    features = {item: _features(item) for _, item in pairs}
    print(f"[demo] training the encoder on {data} with its items' genre and title "
          "(demo preset, seconds on a CPU)")
    train_and_save(data, "sasrec", model_dir, preset_name="demo", item_features=features)
    return model_dir


def _features(item: str) -> ItemFeatures:
    """A demo item's features: its genre (the id's prefix) and a title."""
    genre, _, number = item.rpartition("-")
    return ItemFeatures((genre,), f"{genre} record number {number}")


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
                              metrics_port=args.metrics_port, group_id="streamrec-demo",
                              items_topic=DEMO_ITEMS_TOPIC)
        worker = Worker(config)
        producer = make_producer(bootstrap, "streamrec-demo-replay")
        _publish_catalogue(producer, bootstrap, worker.recommender.checkpoint.vocab.ids)
        threads.append(_start(worker.run, "worker"))
        watcher = _recommendation_consumer(bootstrap, config.recommendations_topic,
                                           config.partitions)
        recent: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=4))
        threads.append(_start(
            lambda: _replay_rounds(producer, config.events_topic, args.rate, stop, recent),
            "replay"))
        _print_banner(bootstrap, config, args.metrics_port, args.rate)
        retirement = _Retirement(producer, worker, RETIRE_AFTER_S)
        arrival = _Arrival(producer, worker.recommender.checkpoint.vocab.ids[0])
        _watch(watcher, recent, args.print_every, args.duration, stop, threads,
               (arrival, retirement))
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


def _publish_catalogue(producer: Producer, bootstrap: str, items: list[str]) -> None:
    """Every item of the model, available, with its genre and a title as features: what a
    shop's catalogue feed would publish (docs/CONTRACTS.md, "Item")."""
    from streamrec.eventlog.items import CatalogueFile, publish_items
    from streamrec.kafka_io.clients import ensure_topics
    from streamrec.worker.item_records import ITEMS_TOPIC_CONFIG

    ensure_topics(bootstrap, {DEMO_ITEMS_TOPIC: 3}, configs={DEMO_ITEMS_TOPIC: ITEMS_TOPIC_CONFIG})
    records = [(item.encode(), _item_record(item, _features(item))) for item in items]
    publish_items(producer, DEMO_ITEMS_TOPIC, CatalogueFile(records))
    print(f"[demo] published a catalogue of {len(records)} items with features (genre, "
          f"title) to topic '{DEMO_ITEMS_TOPIC}'")


def _item_record(item: str, features: ItemFeatures) -> bytes:
    """The items-topic value of an available item with these features."""
    return json.dumps({"item_id": item, "available": True, "features": {
        "categories": list(features.categories), "text": features.text}}).encode()


class _Arrival:
    """Publishes an item no event has named, of the genre of `like`, and counts the
    recommendations that name it: the worker embeds it by its features (the content
    tower) and recommends it to that genre's listeners before anyone has played it."""

    def __init__(self, producer: Producer, like: str) -> None:
        self.producer = producer
        self.genre = genre = like.rpartition("-")[0]
        self.item = f"{genre}-new"
        self.features = ItemFeatures((genre,), f"{genre} record number new")
        self.due = time.monotonic() + NEW_ITEM_AFTER_S
        self.sent_at: int | None = None  # epoch ms
        self.first_ms: int | None = None  # from the record to the first recommendation
        self.naming = self.fans = 0  # recommendations naming it; to users of its genre

    def see(self, rec: dict) -> None:
        """Publish the item once due; count recommendations that name it."""
        if self.sent_at is None:
            if time.monotonic() >= self.due:
                sent_at = int(time.time() * 1000)  # before: the worker may answer before the ack
                self.producer.send(DEMO_ITEMS_TOPIC, _item_record(self.item, self.features),
                                   key=self.item.encode())
                self.producer.flush(10)
                self.sent_at = sent_at
                print(f"[demo] new item {self.item} published with features "
                      f"{list(self.features.categories)} and no events yet")
            return
        if any(x["item_id"] == self.item for x in rec["items"]):
            self.naming += 1
            attended = [h["item_id"] for h in rec["explanation"]["history"]]
            self.fans += bool(attended) and attended[0].startswith(f"{self.genre}-")
            if self.first_ms is None:
                self.first_ms = rec["produced_ts"] - self.sent_at

    def note(self) -> str:
        """What to print beside a recommendation once the item is out."""
        if self.sent_at is None:
            return ""
        if self.first_ms is None:
            return f"\n    new item {self.item}: not recommended yet"
        return (f"\n    new item {self.item} (no events): in {self.naming} recommendations "
                f"({self.fans} to users most attending to {self.genre}), the first "
                f"{self.first_ms} ms after its record")


class _Retirement:
    """Retires the item recommended most in the first seconds, then counts the
    recommendations that name it, among those answering events sent after the worker
    read the retire record: the demo's proof that a retired item is never recommended."""

    def __init__(self, producer: Producer, worker: Worker, after_s: float) -> None:
        self.producer = producer
        self.worker = worker
        self.due = time.monotonic() + after_s
        self.seen: Counter[str] = Counter()
        self.item: str | None = None
        self.read_at: int | None = None  # epoch ms when the worker had read the record
        self.since = self.naming = 0  # recommendations since, and those naming the item

    def see(self, rec: dict) -> None:
        """Count one recommendation; retire the top item once due."""
        items = [x["item_id"] for x in rec["items"]]
        if self.item is None:
            self.seen.update(items)
            if time.monotonic() >= self.due and self.seen:
                self._retire(self.seen.most_common(1)[0][0])
            return
        if self.read_at is None:
            record = self.worker.items.catalogue.get(self.item)
            if record is None or record.available:
                return
            self.read_at = int(time.time() * 1000)
            print(f"[demo] the worker read it: no recommendation should name {self.item} "
                  "from now on")
        if rec["event_ts"] >= self.read_at:
            self.since += 1
            self.naming += self.item in items

    def _retire(self, item: str) -> None:
        self.item = item
        doc = {"item_id": item, "available": False}
        self.producer.send(DEMO_ITEMS_TOPIC, json.dumps(doc).encode(), key=item.encode())
        self.producer.flush(10)
        print(f"[demo] retiring {item}, the item recommended most so far "
              f"({self.seen[item]} times): {json.dumps(doc)} to '{DEMO_ITEMS_TOPIC}'")

    def note(self) -> str:
        """What to print beside a recommendation once the item is retired."""
        if self.read_at is None:
            return ""
        return (f"\n    retired {self.item}: named by {self.naming} of {self.since} "
                "recommendations since the worker read it")


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
  item catalogue   -> topic '{config.items_topic}' (a new item with features and no
                      events {NEW_ITEM_AFTER_S:.0f} s in, recommended by its content; the
                      most recommended item retired {RETIRE_AFTER_S:.0f} s in; the output
                      counts the recs naming each)
  metrics          http://localhost:{metrics_port}/metrics
  try              kcat -b {bootstrap} -C -t {config.recommendations_topic} -o end
  Ctrl-C stops the replay, the worker and the broker.
""")


def _watch(consumer: Consumer, recent: dict[str, deque[str]], every: float, duration: float,
           stop: threading.Event, threads: list[threading.Thread],
           watchers: tuple[_Arrival, _Retirement]) -> None:
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
                for record in records:
                    latest = json.loads(record.value)
                    for watcher in watchers:
                        watcher.see(latest)
            if latest is not None and time.monotonic() >= next_print:
                print(_format(latest, recent, received)
                      + "".join(watcher.note() for watcher in watchers))
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
