"""The data flags shared by `train`, `evaluate` and `replay`: a log file or an events topic."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_default
from streamrec.worker.security import add_security_flags, security_from_args

if TYPE_CHECKING:
    from streamrec.encoder.data import Interactions
    from streamrec.encoder.vocab import ItemVocab


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
        parser.add_argument("--bootstrap", default=env_default("--bootstrap", "127.0.0.1:9092"),
                            help="Kafka bootstrap servers for --from-topic (default %(default)s)")
        add_security_flags(parser)
    parser.add_argument("--user-field", default="user_id", help="csv/jsonl user column")
    parser.add_argument("--item-field", default="item_id", help="csv/jsonl item column")
    parser.add_argument("--time-field", default="ts",
                        help="csv/jsonl timestamp column ('' = file order)")
    parser.add_argument("--delimiter", default=",", help="csv delimiter")
    parser.add_argument("--strict", action="store_true", help="fail on the first bad line")


def load_data(args: argparse.Namespace, vocab: ItemVocab | None = None) -> Interactions:
    """The `Interactions` the `add_data_flags` flags name (mapped through `vocab` if given)."""
    from streamrec.encoder.data import Interactions, load_interactions

    topic = getattr(args, "from_topic", None)
    if topic:
        if args.data is not None:
            raise ConfigError("give either --data or --from-topic, not both")
        from streamrec.worker.topic_log import read_topic_interactions

        data = read_topic_interactions(args.bootstrap, topic, strict=args.strict,
                                       security=security_from_args(args))
        if vocab is None:
            return data
        pairs = [(u, i) for u, seq in zip(data.users, data.sequences, strict=True)
                 for i in data.vocab.external(seq)]
        return Interactions.from_pairs([u for u, _ in pairs], [i for _, i in pairs],
                                       vocab=vocab, source=f"kafka:{topic}")
    if args.data is None or args.format is None:
        raise ConfigError("--data and --format are required (or --from-topic TOPIC)")
    return load_interactions(
        args.data, args.format, user_field=args.user_field, item_field=args.item_field,
        time_field=args.time_field or None, delimiter=args.delimiter, strict=args.strict,
        vocab=vocab,
    )
