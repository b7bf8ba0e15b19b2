#!/usr/bin/env bash
# Interop: runs the pika (Python), amqplib (Node), Celery (a real worker), other Python
# framework (dramatiq, aio-pika, kombu) and amqp-tools (C, rabbitmq-c) scripts, and RabbitMQ's
# own rabbitmqadmin CLI against the HTTP API, against a freshly built warren.
#
# Installs the clients when missing (pika, celery, dramatiq, aio-pika and kombu from
# interop/{python,celery,frameworks}/requirements.txt into a venv under target/interop/, amqplib
# with `npm ci` from interop/node/package-lock.json, amqp-tools and openssl with apt-get), builds
# the debug broker, starts it on a free loopback port with a temporary data dir (plus a TLS
# listener with a certificate made by openssl, and a user `c-user` with restricted permissions),
# runs the scripts, stops the broker with SIGTERM (which must exit 0), and
# exits non-zero if anything failed.
#
# rabbitmqadmin (MPL-2.0, RabbitMQ's) is not kept in this repository: the one on PATH is used,
# else the copy in Debian's rabbitmq-server package, downloaded with `apt-get download` and
# unpacked under target/interop/ (not installed: no RabbitMQ runs).
#
# Environment: PYTHON (default python3), RABBITMQADMIN (a rabbitmqadmin script to use), WARREN_BIN (a broker binary to use instead of building
# target/debug/warren), WARREN_INTEROP_LOG (broker log filter, default warn),
# INTEROP_TIMEOUT (seconds per script, default 120).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${WARREN_BIN:-$TARGET_DIR/debug/warren}"
WORK="$TARGET_DIR/interop"
VENV="$WORK/venv"
LOG_LEVEL="${WARREN_INTEROP_LOG:-warn}"
export INTEROP_TIMEOUT="${INTEROP_TIMEOUT:-120}"

say() { echo "interop: $*"; }
die() {
    echo "interop: $*" >&2
    echo "interop: 0 passed, 1 failed"
    exit 1
}

mkdir -p "$WORK"

# --- clients -------------------------------------------------------------------------------
# pika and celery: a venv of our own if it has both, else an interpreter that already has them,
# else the venv (created if needed; where venvs cannot be made, the interpreter itself) with
# whatever is missing installed.
PY_MODULES='import pika, celery, dramatiq, aio_pika, kombu'
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$PY_MODULES" 2>/dev/null; then
    PY="$VENV/bin/python"
elif "$PYTHON" -c "$PY_MODULES" 2>/dev/null; then
    PY="$PYTHON"
else
    say "installing pika, celery, dramatiq, aio-pika and kombu"
    if [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        PY="$VENV/bin/python"
    else
        PY="$PYTHON"
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check -r interop/python/requirements.txt \
        -r interop/celery/requirements.txt -r interop/frameworks/requirements.txt ||
        die "pip install of the Python clients failed"
fi
"$PY" -c "$PY_MODULES" || die "a Python client is not importable with $PY"

command -v node >/dev/null || die "node is not installed"
if [ ! -f interop/node/node_modules/amqplib/channel_api.js ]; then
    say "installing amqplib (npm ci)"
    (cd interop/node && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi

# amqp-tools (the C client's command-line tools) and openssl (a certificate for the TLS
# listener): Debian packages.
apt_missing=()
command -v amqp-publish >/dev/null || apt_missing+=(amqp-tools)
command -v openssl >/dev/null || apt_missing+=(openssl)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "installing ${apt_missing[*]} (apt-get)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${apt_missing[@]}"; } >/dev/null \
        || die "apt-get install ${apt_missing[*]} failed"
fi

# rabbitmqadmin: a stdlib-only Python script.
RMQADMIN="${RABBITMQADMIN:-}"
RMQ_DEB_DIR="$WORK/rabbitmq-server"
if [ -z "$RMQADMIN" ] && command -v rabbitmqadmin >/dev/null; then
    RMQADMIN="$(command -v rabbitmqadmin)"
fi
if [ -z "$RMQADMIN" ] && [ -f "$RMQ_DEB_DIR/usr/bin/rabbitmqadmin" ]; then
    RMQADMIN="$RMQ_DEB_DIR/usr/bin/rabbitmqadmin"
fi
if [ -z "$RMQADMIN" ]; then
    command -v apt-get >/dev/null || die "rabbitmqadmin not found and apt-get not available (set RABBITMQADMIN)"
    say "fetching rabbitmqadmin from Debian's rabbitmq-server package"
    rm -rf "$WORK/deb" && mkdir -p "$WORK/deb"
    if ! (cd "$WORK/deb" && apt-get download rabbitmq-server >/dev/null 2>&1); then
        apt-get update >/dev/null 2>&1 || true
        (cd "$WORK/deb" && apt-get download rabbitmq-server >/dev/null) ||
            die "apt-get download rabbitmq-server failed"
    fi
    dpkg-deb -x "$WORK"/deb/rabbitmq-server_*.deb "$RMQ_DEB_DIR" || die "dpkg-deb -x failed"
    RMQADMIN="$RMQ_DEB_DIR/usr/bin/rabbitmqadmin"
fi
[ -f "$RMQADMIN" ] || die "no rabbitmqadmin at $RMQADMIN"

# --- broker --------------------------------------------------------------------------------
if [ -z "${WARREN_BIN:-}" ]; then
    say "building warren (debug)"
    cargo build --quiet --bin warren || die "cargo build failed"
fi
[ -x "$BIN" ] || die "no broker binary at $BIN"

DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/warren-interop.XXXXXX")"
BROKER_LOG="$WORK/broker.log"
BROKER_PID=""

cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_DIR"
}
trap cleanup EXIT

# True while the process runs (an exited child stays a zombie until reaped, and `kill -0`
# still succeeds on a zombie).
is_running() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [ -n "$state" ] && [[ "$state" != Z* ]]
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
    "$PY" -c 'import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)' "$1"
}

# A self-signed certificate for localhost, and the config: guest as usual, plus c-user whose
# patterns allow only names starting with c- (the C client's refused-permission cases).
TLS_DIR="$WORK/tls"
mkdir -p "$TLS_DIR"
if [ ! -s "$TLS_DIR/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >/dev/null 2>&1 \
        || die "openssl could not make a certificate"
fi
CONFIG="$WORK/interop.toml"
write_config() {
    cat >"$CONFIG" <<TOML
[[users]]
name = "guest"
password = "guest"
tags = ["administrator"]

[[users]]
name = "c-user"
password = "pw"

[[permissions]]
user = "c-user"
configure = "^c-"
write = "^c-"
read = "^c-"

[tls]
port = $1
cert_file = "$TLS_DIR/cert.pem"
key_file = "$TLS_DIR/key.pem"
TOML
}

# A free port can be taken between picking and binding it: try a few.
PORT=""
for attempt in 1 2 3; do
    candidate="$(free_port)"
    TLS_PORT="$(free_port)"
    HTTP_PORT="$(free_port)"
    write_config "$TLS_PORT"
    "$BIN" serve --config "$CONFIG" --bind 127.0.0.1 --port "$candidate" \
        --http-port "$HTTP_PORT" --data-dir "$DATA_DIR" --log-level "$LOG_LEVEL" \
        >"$BROKER_LOG" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 1 100); do
        if ! is_running "$BROKER_PID"; then
            break
        fi
        if port_open "$candidate"; then
            PORT="$candidate"
            break
        fi
        sleep 0.1
    done
    [ -n "$PORT" ] && break
    say "broker did not come up on port $candidate (attempt $attempt); its log:"
    cat "$BROKER_LOG" >&2 || true
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
done
[ -n "$PORT" ] || die "could not start warren"
for _ in $(seq 1 50); do
    port_open "$HTTP_PORT" && break
    sleep 0.1
done
say "warren (pid $BROKER_PID) listening on 127.0.0.1:$PORT (HTTP $HTTP_PORT)"

export AMQP_URL="amqp://guest:guest@127.0.0.1:$PORT/%2F"
export AMQP_RESTRICTED_URL="amqp://c-user:pw@127.0.0.1:$PORT/%2F"
export AMQPS_URL="amqps://guest:guest@localhost:$TLS_PORT/%2F"
export AMQP_CACERT="$TLS_DIR/cert.pem"

# --- scripts -------------------------------------------------------------------------------
TOTAL_PASSED=0
TOTAL_FAILED=0

# Runs one script, echoes its output, and adds the counts of its final
# "<name>: N passed, M failed" line (a script that ends without one counts as one failure).
run_suite() {
    local name="$1"
    shift
    local out="$WORK/$name.out"
    local rc statuses
    set +e
    "$@" 2>&1 | tee "$out"
    statuses=("${PIPESTATUS[@]}")
    set -e
    rc="${statuses[0]}"
    local summary
    summary="$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed\$" "$out" | tail -n 1 || true)"
    if [ -z "$summary" ]; then
        echo "interop: $name ended without a summary line (exit $rc)"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
        return
    fi
    local passed failed
    passed="$(echo "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')"
    failed="$(echo "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')"
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
    fi
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
}

run_suite interop-pika "$PY" interop/python/test_pika.py
run_suite interop-amqplib node interop/node/test_amqplib.js
run_suite interop-celery "$PY" interop/celery/test_celery.py
run_suite interop-frameworks "$PY" interop/frameworks/test_frameworks.py
export HTTP_PORT RABBITMQADMIN="$RMQADMIN"
run_suite interop-rabbitmqadmin "$PY" interop/rabbitmqadmin/test_rabbitmqadmin.py
run_suite interop-amqp-tools bash interop/c/test_amqp_tools.sh

# --- graceful shutdown ---------------------------------------------------------------------
if is_running "$BROKER_PID"; then
    kill -TERM "$BROKER_PID"
    status=""
    for _ in $(seq 1 150); do
        if ! is_running "$BROKER_PID"; then
            status=0
            wait "$BROKER_PID" || status=$?
            break
        fi
        sleep 0.1
    done
    if [ -z "$status" ]; then
        echo "FAIL shutdown: warren still running 15s after SIGTERM"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
    elif [ "$status" -ne 0 ]; then
        echo "FAIL shutdown: warren exited with status $status after SIGTERM"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
    else
        echo "ok   shutdown: SIGTERM, exit 0"
        TOTAL_PASSED=$((TOTAL_PASSED + 1))
    fi
    BROKER_PID=""
else
    echo "FAIL broker: warren died during the run"
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

if [ "$TOTAL_FAILED" -ne 0 ]; then
    echo "interop: broker log ($BROKER_LOG), last 50 lines:"
    tail -n 50 "$BROKER_LOG" || true
fi
echo "interop: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
