#!/usr/bin/env bash
# The developer entry points; each first brings the checkout up to date (setup.sh).
#
#   deploy/dev.sh setup            prepare .venv and the Kafka jars
#   deploy/dev.sh demo [ARGS...]   run `streamrec demo ARGS...`
#   deploy/dev.sh test [ARGS...]   run pytest ARGS... (integration tests start a broker); with
#                                  no ARGS, the both_clients integration tests run again on
#                                  the other Kafka client
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

setup() { bash "$ROOT/deploy/setup.sh"; }

# pytest with ARGS; exits on failure, and on "no tests collected" (exit 5): a wrong
# path or filter must not pass CI.
run_pytest() {
  local rc=0
  "$ROOT/.venv/bin/python" -m pytest "$@" || rc=$?
  if [[ $rc -eq 5 ]]; then
    echo "dev.sh test: pytest collected no tests; treating that as a failure" >&2
    exit 1
  fi
  [[ $rc -eq 0 ]] || exit "$rc"
}

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
    run_pytest "$@"
    if [[ $# -eq 0 ]]; then
      # The whole suite ran on the default Kafka client; the integration tests that
      # already hold on the other adapter run again on it (marker `both_clients`).
      other=confluent
      default=$("$ROOT/.venv/bin/python" -c \
        'from streamrec.kafka_io.clients import resolve_client; print(resolve_client())')
      [[ "$default" == confluent ]] && other=kafka-python
      echo "dev.sh test: integration tests again with --kafka-client $other" >&2
      STREAMREC_KAFKA_CLIENT="$other" run_pytest -m "integration and both_clients"
    fi
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
