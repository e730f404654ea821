#!/usr/bin/env bash
# The developer entry points; each first brings the checkout up to date (setup.sh).
#
#   deploy/dev.sh setup            prepare .venv and the Kafka jars
#   deploy/dev.sh demo [ARGS...]   run `streamrec demo ARGS...`
#   deploy/dev.sh test [ARGS...]   run pytest ARGS... (integration tests start a broker)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

setup() { bash "$ROOT/deploy/setup.sh"; }

cmd="${1:-}"
[[ $# -gt 0 ]] && shift

case "$cmd" in
  setup)
    setup
    ;;
  demo)
    setup
    exec "$ROOT/.venv/bin/streamrec" demo "$@"
    ;;
  test)
    setup
    rc=0
    "$ROOT/.venv/bin/python" -m pytest "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then
      # pytest's "no tests collected": a wrong path or filter must not pass CI.
      echo "dev.sh test: pytest collected no tests; treating that as a failure" >&2
      exit 1
    fi
    exit "$rc"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
