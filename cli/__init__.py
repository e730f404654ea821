"""The `streamrec` command line: one module per subcommand, shared flags in `flags.py`.

`main.py` is the entry point. Each command module exposes `register(subparsers)`,
which adds its parser and sets `handler=` (a function of the parsed namespace that
returns an exit code). Handlers turn flags into the typed config objects of the
library; library code never sees argparse.

May import: every other streamrec package (it is the top of the import flow).
Imported by: nothing in streamrec.
"""
