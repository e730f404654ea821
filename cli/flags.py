"""Flag helpers shared by the subcommands: env fallbacks, Kafka connection, data sources.

Every flag takes its default from a `STREAMREC_*` environment variable when set
(`streamrec.common.settings`), then from the library's own default. Commands that
talk to Kafka add `add_kafka_flags` (bootstrap, client library, TLS/SASL) and turn them into a
`KafkaSecurity` with `security_from_args`; `train`, `evaluate` and `replay` read
their interactions through `add_data_flags`/`load_data`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_default, env_name, parse_bool
from streamrec.index.params import AnnParams
from streamrec.kafka_io.port import CLIENT_CHOICES
from streamrec.kafka_io.security import KafkaSecurity, SaslMechanism, SecurityProtocol, named

if TYPE_CHECKING:
    from streamrec.encoder.data import Interactions
    from streamrec.encoder.vocab import ItemVocab

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def env_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str,
             default: object, help_text: str, kind: type = str, env: str | None = None) -> None:
    """`flag` whose default comes from `STREAMREC_<env or flag>`, then from `default`."""
    env = env or flag
    parser.add_argument(
        flag, type=kind, default=env_default(env, default, kind),
        help=f"{help_text} (env {env_name(env)}; default: %(default)s)")


def add_kafka_flags(parser: argparse.ArgumentParser, purpose: str = "") -> None:
    """`--bootstrap`, `--kafka-client` and the TLS/SASL flags: every command that talks
    to Kafka (`cli/main.py` selects the client before the command runs)."""
    env_flag(parser, "--bootstrap", DEFAULT_BOOTSTRAP,
             "Kafka bootstrap servers, host:port[,host:port]" + purpose)
    add_client_flag(parser)
    add_security_flags(parser)


def add_client_flag(parser: argparse.ArgumentParser) -> None:
    """`--kafka-client`: which library talks to Kafka (the same choice for every client)."""
    parser.add_argument(
        "--kafka-client", choices=CLIENT_CHOICES,
        default=env_default("--kafka-client", "auto", str),
        help="Kafka client library: confluent (confluent-kafka over librdkafka), "
             "kafka-python, or auto (confluent when it is installed, else kafka-python) "
             "(env STREAMREC_KAFKA_CLIENT; default: %(default)s)")


def add_replication_flag(parser: argparse.ArgumentParser) -> None:
    """`--replication-factor` of the topics a command creates; unset = the broker's default.

    Leaving it to the broker means a 3-broker cluster's `default.replication.factor`
    applies, instead of a hard-coded 1 that loses state with one broker.
    """
    env_flag(parser, "--replication-factor", None,
             "replicas of each topic this command creates (default: the broker's "
             "default.replication.factor)", int)


def add_index_flags(parser: argparse.ArgumentParser, index_default: str = "auto") -> None:
    """`--index` and the approximate index's build and search parameters
    (index/params.py); the worker also takes `--min-recall`."""
    from streamrec.index.build import APPROXIMATE_KINDS, AUTO_APPROXIMATE_ITEMS

    env_flag(parser, "--index", index_default,
             f"item index: auto (exact below {AUTO_APPROXIMATE_ITEMS:,} items, approximate "
             "from there; see README), torch (exact matmul + top-k), torch-bf16 (bfloat16 "
             "candidates re-scored in float32: auto's choice on CPUs with bfloat16 units), "
             f"faiss (exact flat), or approximate: {', '.join(APPROXIMATE_KINDS)}")
    env_flag(parser, "--nlist", 0, "IVF lists of an approximate index (0 = 4 x sqrt(items))",
             int)
    env_flag(parser, "--nprobe", 0, "IVF lists searched per query (0 = chosen for recall: "
             "16, widened until recall@10 on the model's queries reaches 0.95)", int)
    env_flag(parser, "--ef-search", 128, "HNSW candidates kept while searching", int)
    env_flag(parser, "--hnsw-m", 32, "HNSW links per item", int)
    env_flag(parser, "--pq-m", 0, "product-quantizer bytes per item of ivf-pq (0 = d / 4)",
             int)
    env_flag(parser, "--rescore", 0, "candidates per result ranked again by their float32 "
             "scores (0 = 2 for quantized codes: ivf-sq8, ivf-pq, sq8, pq; 1 = none)", int)


def ann_from_args(args: argparse.Namespace) -> AnnParams:
    """The approximate index's parameters from `add_index_flags`' flags."""
    try:
        return AnnParams(nlist=args.nlist, nprobe=args.nprobe, ef_search=args.ef_search,
                         hnsw_m=args.hnsw_m, pq_m=args.pq_m, rescore=args.rescore)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


SINCE_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str, flag: str) -> float:
    """A duration such as `90s`, `30m`, `1h`, `7d`, in seconds; ConfigError otherwise."""
    text = text.strip()
    try:
        if text[-1:] in SINCE_UNITS:
            seconds = float(text[:-1]) * SINCE_UNITS[text[-1]] / 1000
            if seconds > 0:
                return seconds
    except ValueError:
        pass
    raise ConfigError(f"{flag} {text!r}: give a positive duration such as 90s, 30m, 1h, 7d")


def parse_since(text: str, now_ms: int) -> int:
    """`--since`: a duration back from now (`90s`, `30m`, `1h`, `7d`) or epoch ms;
    returns epoch ms. ConfigError names the forms it takes."""
    text = text.strip()
    try:
        if text[-1:] in SINCE_UNITS:
            return now_ms - int(float(text[:-1]) * SINCE_UNITS[text[-1]])
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"--since {text!r}: give a duration (90s, 30m, 1h, 7d) or epoch "
                          "milliseconds") from exc


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """The Kafka security flags, each with its `STREAMREC_*` environment fallback."""
    group = parser.add_argument_group(
        "Kafka security", "TLS and SASL settings for every Kafka client of this command.")

    def add(flag: str, help_text: str, secret: bool = False, **kwargs: Any) -> None:
        env = f"env {env_name(flag)}" + (": prefer it, flags show up in `ps`" if secret else "")
        group.add_argument(flag, default=env_default(flag, kwargs.pop("default", None), str),
                           help=f"{help_text} ({env})", **kwargs)

    add("--security-protocol", "how clients connect (default %(default)s)",
        default="PLAINTEXT", choices=get_args(SecurityProtocol))
    add("--ssl-cafile", "PEM CA bundle that signed the brokers' certificates "
        "(default: the system CAs)", metavar="PEM")
    add("--ssl-certfile", "client certificate, PEM (mutual TLS; with --ssl-keyfile)",
        metavar="PEM")
    add("--ssl-keyfile", "client private key, PEM (mutual TLS)", metavar="PEM")
    add("--ssl-password", "password of an encrypted --ssl-keyfile", secret=True,
        metavar="SECRET")
    group.add_argument(
        "--no-ssl-check-hostname", action="store_true",
        default=env_default("--no-ssl-check-hostname", False),
        help="accept a broker certificate that does not name the host connected to; the CA "
             "is still checked (env STREAMREC_NO_SSL_CHECK_HOSTNAME)")
    add("--sasl-mechanism", "SASL mechanism (default with SASL_*: PLAIN)",
        choices=get_args(SaslMechanism))
    add("--sasl-username", "SASL username", metavar="USER")
    add("--sasl-password", "SASL password", secret=True, metavar="SECRET")


def security_from_args(args: argparse.Namespace) -> KafkaSecurity:
    """The checked `KafkaSecurity` for flags added by `add_security_flags`.

    Raises ConfigError naming the flag (and env variable) to fix, including SSL
    files that do not exist.
    """
    if args.security_protocol not in get_args(SecurityProtocol):  # a bad env value
        raise ConfigError(f"{named('security_protocol')} must be one of "
                          f"{', '.join(get_args(SecurityProtocol))}, "
                          f"got {args.security_protocol!r}")
    security = KafkaSecurity(
        protocol=args.security_protocol,
        ssl_cafile=_path(args.ssl_cafile), ssl_certfile=_path(args.ssl_certfile),
        ssl_keyfile=_path(args.ssl_keyfile), ssl_password=args.ssl_password or None,
        ssl_check_hostname=not args.no_ssl_check_hostname,
        sasl_mechanism=args.sasl_mechanism or None, sasl_username=args.sasl_username or None,
        sasl_password=args.sasl_password or None,
    )
    security.check_files()
    return security


def add_data_flags(parser: argparse.ArgumentParser, from_topic: bool = False) -> None:
    """`--data/--format` and the column flags; with `from_topic`, also `--from-topic`."""
    from streamrec.encoder.data import DATA_FORMATS

    parser.add_argument("--data", type=Path, required=not from_topic,
                        help="interaction log file")
    parser.add_argument("--format", choices=DATA_FORMATS, help="file format of --data")
    if from_topic:
        parser.add_argument("--from-topic", metavar="TOPIC", default=None,
                            help="read the interactions from this events topic instead "
                                 "(with --bootstrap)")
        parser.add_argument("--since", default=None,
                            help="with --from-topic (and evaluate --online): only records "
                                 "whose Kafka timestamp is at or after this: a duration back "
                                 "from now (30m, 1h, 7d) or epoch ms (default: all of them)")
        add_kafka_flags(parser, " for --from-topic")
    parser.add_argument("--user-field", default="user_id", help="csv/jsonl user column")
    parser.add_argument("--item-field", default="item_id", help="csv/jsonl item column")
    parser.add_argument("--time-field", default="ts",
                        help="csv/jsonl timestamp column ('' = file order)")
    parser.add_argument("--type-field", default="type",
                        help="csv/jsonl event-type column, read with --event-types")
    add_event_types_flag(parser, "events (csv/jsonl rows, topic events) of other types are "
                                 "skipped and counted")
    parser.add_argument("--delimiter", default=",", help="csv delimiter")
    parser.add_argument("--strict", action="store_true", help="fail on the first bad line")


def add_event_types_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """`--event-types view,purchase` (env STREAMREC_EVENT_TYPES); parse with
    `parse_event_types`. Shared by the worker and the data flags so both read alike."""
    env_flag(parser, "--event-types", None,
             f"comma-separated allow-list of event types; {what}; 'untyped' in the list "
             "keeps events without a type; unset = every event")


def parse_event_types(text: str | None) -> frozenset[str] | None:
    """`"view, purchase"` -> {"view", "purchase"}; None or blank -> None (every type)."""
    if text is None:
        return None
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    return names or None


def load_data(args: argparse.Namespace, vocab: ItemVocab | None = None) -> Interactions:
    """The `Interactions` the `add_data_flags` flags name (mapped through `vocab` if given)."""
    from streamrec.encoder.data import Interactions, load_interactions

    topic = getattr(args, "from_topic", None)
    event_types = parse_event_types(args.event_types)
    if topic:
        if args.data is not None:
            raise ConfigError("give either --data or --from-topic, not both")
        from streamrec.eventlog.topic_log import read_topic_interactions
        from streamrec.worker.validate import now_ms

        since = getattr(args, "since", None)
        data = read_topic_interactions(
            args.bootstrap, topic, strict=args.strict, security=security_from_args(args),
            event_types=event_types,
            since_ms=None if since is None else parse_since(since, now_ms()))
        if vocab is None:
            return data
        pairs = [(u, i) for u, seq in zip(data.users, data.sequences, strict=True)
                 for i in data.vocab.external(seq)]
        mapped = Interactions.from_pairs([u for u, _ in pairs], [i for _, i in pairs],
                                         vocab=vocab, source=f"kafka:{topic}")
        # Keep what the topic read counted (records, invalid ones, other types).
        report = dataclasses.replace(
            data.report, interactions=mapped.report.interactions, users=mapped.report.users,
            items=mapped.report.items, unknown_items=mapped.report.unknown_items)
        return dataclasses.replace(mapped, report=report)
    if getattr(args, "since", None) is not None:
        raise ConfigError("--since reads a topic by time: it needs --from-topic")
    if args.data is None or args.format is None:
        raise ConfigError("--data and --format are required (or --from-topic TOPIC)")
    return load_interactions(
        args.data, args.format, user_field=args.user_field, item_field=args.item_field,
        time_field=args.time_field or None, type_field=args.type_field,
        event_types=event_types, delimiter=args.delimiter, strict=args.strict, vocab=vocab,
    )


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


# flag -> (ContentConfig field, type, help): the content tower, with --item-features.
CONTENT_FLAGS = {
    "--feature-buckets": ("buckets", int, "hashed embedding rows for the features' categories "
                                          "and words (default 32768)"),
    "--id-dropout": ("id_dropout", float, "share of the items with features trained through "
                                          "their features alone each step (default 0.2)"),
    "--feature-min-items": ("min_items", int, "a category or word counts once this many "
                                              "trained items have it (default 2; 0 = all)"),
    "--token-dropout": ("token_dropout", float, "share of an item's feature tokens left out "
                                                "each time training reads it (default 0)"),
    "--feature-unknown-rows": ("unknown_rows", bool,
                               "categories and words outside the vocabulary count as one "
                               "trained row per field (default on; --no-feature-unknown-rows: "
                               "they count for nothing)"),
}


def add_item_feature_flags(p: argparse.ArgumentParser) -> None:
    """`--item-features FILE` and the content tower's flags (`streamrec train`)."""
    p.add_argument("--item-features", type=Path, metavar="FILE",
                   default=env_default("--item-features", None, Path),
                   help="JSON lines of item records, as on the items topic ({\"item_id\": ..., "
                        "\"features\": {\"categories\": [...], \"text\": \"...\", \"vector\": "
                        "[...]}}): adds a content tower, so items are known by their features "
                        "too and items without interactions can be placed by them alone")
    for flag, (_, kind, text) in CONTENT_FLAGS.items():
        add_override_flag(p, flag, kind, text)


def add_override_flag(p: argparse.ArgumentParser, flag: str, kind: type, text: str,
                      choices: Sequence[str] | None = None) -> None:
    """A flag that overrides one config field, None when not given (nor its STREAMREC_*
    variable); a bool field gets `--flag` / `--no-flag`."""
    if kind is bool:
        p.add_argument(flag, action=argparse.BooleanOptionalAction,
                       default=env_default(flag, None, parse_bool), help=text)
    else:
        p.add_argument(flag, type=kind, default=env_default(flag, None, kind), choices=choices,
                       help=text)


def content_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ContentConfig fields the tower's flags set (None: not given)."""
    return {name: getattr(args, flag[2:].replace("-", "_"))
            for flag, (name, _, _) in CONTENT_FLAGS.items()}


def int_list(text: str) -> tuple[int, ...]:
    """`"64,256,1024"` -> (64, 256, 1024): the comma-separated integers of a flag."""
    return tuple(int(x) for x in text.split(",") if x.strip())
