"""One module per `streamrec` subcommand; each exposes `register(subparsers)`.

A module's `register` adds its parser and sets `handler=` (a function taking the
parsed namespace and returning an exit code). The handler turns the namespace into
the typed config objects of the library code; library code never sees argparse.
"""
