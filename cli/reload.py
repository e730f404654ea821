"""`streamrec reload`: ask a running worker to check its model repository now.

The worker checks `CURRENT` every `--model-check-s` anyway; this makes it check at
once, through the same HTTP server as its metrics (`POST /reload`), so it works
where sending a signal does not (another container, another host). `kill -HUP PID`
does the same on the worker's own machine.
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request

from streamrec.cli.flags import env_flag
from streamrec.common.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec reload`."""
    p = sub.add_parser("reload", help="make a running worker check its model repository now",
                       description=__doc__)
    env_flag(p, "--url", "http://127.0.0.1:9108",
             "the worker's metrics server (its --metrics-host/--metrics-port)",
             env="--reload-url")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default %(default)s)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """POST /reload; exit 0 when the worker took the request."""
    url = args.url.rstrip("/") + "/reload"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as answer:
            print(answer.read().decode().strip())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{url} answered {exc.code}: is this a streamrec worker serving a "
                          "model repository?") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"no worker answers at {url}: {exc}; check --url (the worker's "
                          "metrics host and port)") from exc
    return 0
