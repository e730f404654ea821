#!/usr/bin/env bash
# Prepares a checkout for the demo and the tests; safe and fast to run again.
#
#   1. checks Python >= 3.11 and Java >= 17 (as root with apt-get, installs what is
#      missing: openjdk-17-jre-headless, maven, python3-venv);
#   2. creates .venv and installs streamrec editable with its cpu (faiss-cpu) and dev
#      extras, again only when pyproject.toml changed (sha256 stamp in .venv);
#   3. fetches the Kafka broker jars from Maven Central into .cache/kafka/libs with
#      deploy/kafka/pom.xml, again only when the pom changed (sha256 stamp);
#   4. installs Debian's prometheus package (prometheus + promtool, for the alert-rule
#      and scrape tests) when promtool is missing: as root with apt-get, else it warns
#      (the tests skip) or, with CI set, stops. On a systemd host the package also
#      enables a prometheus service on :9090 (`systemctl disable --now prometheus`).
#
# Environment: PYTHON (default python3) picks the interpreter for a new .venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY_STAMP="$VENV/.streamrec-pyproject.sha256"
POM="$ROOT/deploy/kafka/pom.xml"
LIBS="$ROOT/.cache/kafka/libs"
POM_STAMP="$ROOT/.cache/kafka/pom.sha256"
PYTHON="${PYTHON:-python3}"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Runs a chatty command with its output in a log file; shows the log's tail on failure.
quietly() {
  local log="$1"; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "'$*' failed; full output in $log"
  fi
}

can_apt() { [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  say "installing $* with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Installs the packages when allowed, else stops with what to install by hand.
need() {
  local what="$1"; shift
  can_apt || die "$what is missing: install it (Debian: apt-get install $*) and run again"
  apt_install "$@"
}

check_python() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    [[ -x "$VENV/bin/python" ]] && return  # an existing venv brings its own
    need "Python >= 3.11 ($PYTHON)" python3 python3-venv
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || die "$PYTHON is older than 3.11; set PYTHON=/path/to/python3.11"
  fi
}

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

check_java() {
  command -v java >/dev/null 2>&1 || need "Java 17" openjdk-17-jre-headless
  local major
  major="$(java_major)"
  [[ -n "$major" && "$major" -ge 17 ]] \
    || die "Kafka 4 needs Java >= 17, found '$(java -version 2>&1 | head -n1)'"
  say "java $major ok"
}

setup_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating .venv with $("$PYTHON" -V 2>&1)"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      need "the venv module" python3-venv
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  local want
  want="$(sha "$ROOT/pyproject.toml")"
  if [[ -f "$PY_STAMP" && "$(cat "$PY_STAMP")" == "$want" && -x "$VENV/bin/streamrec" ]]; then
    say ".venv up to date ($("$VENV/bin/python" -V 2>&1))"
    return
  fi
  say "installing streamrec and its dependencies into .venv (pip, PyPI; log: .venv/pip-install.log)"
  quietly "$VENV/pip-install.log" \
    "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[cpu,dev]"
  printf '%s\n' "$want" >"$PY_STAMP"
  say ".venv ready"
}

fetch_jars() {
  local want
  want="$(sha "$POM")"
  if [[ -f "$POM_STAMP" && "$(cat "$POM_STAMP")" == "$want" ]] \
      && compgen -G "$LIBS/*.jar" >/dev/null; then
    say "Kafka jars up to date ($(find "$LIBS" -name '*.jar' | wc -l) in .cache/kafka/libs)"
    return
  fi
  command -v mvn >/dev/null 2>&1 || need "Maven (to fetch the Kafka jars)" maven
  say "fetching the Kafka jars from Maven Central (deploy/kafka/pom.xml)"
  # Into a fresh dir, then swap: jars of an older pom must not stay on the classpath.
  local fresh="$LIBS.new"
  rm -rf "$fresh"
  mkdir -p "$(dirname "$LIBS")"
  quietly "$ROOT/.cache/kafka/mvn.log" \
    mvn -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$fresh"
  compgen -G "$fresh/*.jar" >/dev/null || die "Maven fetched no jars into $fresh"
  if ! diff -rq "$fresh" "$LIBS" >/dev/null 2>&1; then
    rm -rf "$LIBS"
    mv "$fresh" "$LIBS"
  else
    rm -rf "$fresh"  # same jars: leave those a running broker uses untouched
  fi
  printf '%s\n' "$want" >"$POM_STAMP"
  say "Kafka jars ready ($(find "$LIBS" -name '*.jar' | wc -l) in .cache/kafka/libs)"
}

check_prometheus() {
  if command -v promtool >/dev/null 2>&1; then  # cheap no-op once installed
    say "promtool $(promtool --version 2>&1 | sed -n '1s/.*version \([^ ]*\).*/\1/p') ok"
    return
  fi
  if can_apt; then
    apt_install prometheus
  elif [[ -n "${CI:-}" ]]; then
    need "promtool (the Prometheus rule tests)" prometheus
  else
    say "promtool not found: the Prometheus tests will be skipped (Debian: apt-get install prometheus)"
    return
  fi
  command -v promtool >/dev/null 2>&1 || die "the prometheus package brought no promtool"
  say "promtool installed"
}

check_python
check_java
setup_venv
fetch_jars
check_prometheus
