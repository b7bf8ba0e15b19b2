#!/usr/bin/env bash
# warren vs RabbitMQ, side by side on this machine, with the same client (warren-perf).
#
#   bench/compare.sh                      # everything: scenarios 1-9 of issue 4 and the durability
#                                         # measurements of issue 3 ("d"), 3 repetitions each
#   SCENARIOS=1,3 REPS=1 bench/compare.sh # a quick look
#
# For every scenario, each broker in turn gets a fresh data dir and a fresh process on a private
# port (warren 5690, RabbitMQ 5691 by default), runs REPS repetitions, and is stopped again. Peak
# RSS is reset before each repetition (/proc/PID/clear_refs), so it is that repetition's peak.
# Results go to a JSON-lines file (one line per run, with the 1-minute load average at its start);
# bench/report.py turns them into docs/BENCHMARKS.md (medians, ratios, CPU µs per message, RSS).
#
# Environment (defaults in brackets):
#   SCENARIOS [1,2,3,4,5,6,7,8,9,d]  which scenarios; d = issue 3 (1M persistent: recovery time
#                                      after a clean stop and after kill -9, disk use)
#   REPS [3]  DURATION [10] seconds per timed run
#   BACKLOG_COUNT [1000000] (7)  STREAM_COUNT [1000000] (8)  STREAM_SIZE [16] (8)  RECOVERY_COUNT [1000000] (d)
#   IDLE_CONNECTIONS [10000]  IDLE_QUEUES [10000] (9)
#   BROKERS [warren,rabbitmq]  WARREN_PORT [5690]  RABBIT_PORT [5691]
#   OUT [docs/BENCHMARKS.md]  RAW [bench/results.jsonl]  KEEP_TMP [0]  SKIP_BUILD [0]
#
# Needs: cargo, jq, python3, and (installed here with apt-get when missing) rabbitmq-server.
# RabbitMQ is started through Debian's wrapper path (su to the rabbitmq user, as
# /usr/sbin/rabbitmq-server does) with `ulimit -n` raised like the systemd unit's LimitNOFILE:
# su's PAM session otherwise leaves 1024 descriptors, too few for scenario 9.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCENARIOS=${SCENARIOS:-1,2,3,4,5,6,7,8,9,d}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
BACKLOG_COUNT=${BACKLOG_COUNT:-1000000}
STREAM_COUNT=${STREAM_COUNT:-1000000}
STREAM_SIZE=${STREAM_SIZE:-16}
RECOVERY_COUNT=${RECOVERY_COUNT:-1000000}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_QUEUES=${IDLE_QUEUES:-10000}
BROKERS=${BROKERS:-warren,rabbitmq}
WARREN_PORT=${WARREN_PORT:-5690}
RABBIT_PORT=${RABBIT_PORT:-5691}
OUT=${OUT:-$ROOT/docs/BENCHMARKS.md}
RAW=${RAW:-$ROOT/bench/results.jsonl}
KEEP_TMP=${KEEP_TMP:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
RABBIT_NODE=warrenbench@localhost
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=65536
[ "$NOFILE" -gt 65536 ] && NOFILE=65536

# warren's own settings must not leak in from the caller's environment.
for v in $(compgen -e | grep '^WARREN_' || true); do unset "$v"; done

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }

for tool in jq python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# --- 1. RabbitMQ -------------------------------------------------------------------------------
if [[ ,$BROKERS, == *,rabbitmq,* ]] && ! command -v rabbitmq-server >/dev/null; then
    log "installing rabbitmq-server"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; }; then
        die "apt-get install rabbitmq-server failed"
    fi
    # The package starts a system node on 5672 where there is an init system; it is not ours to
    # stop, and our node uses its own name and ports.
fi
if [[ ,$BROKERS, == *,rabbitmq,* ]]; then
    [ "$(id -u)" = 0 ] || die "run as root: RabbitMQ is started as the rabbitmq user through su"
fi

# --- 2. warren (release) -----------------------------------------------------------------------
if [ "$SKIP_BUILD" != 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --bin warren --bin warren-perf --bin warren-bench) >&2 \
        || die "cargo build failed"
fi

WORK=$(mktemp -d /tmp/warren-compare.XXXXXX) || die "mktemp"
chmod 755 "$WORK"
BIN=$WORK/bin
mkdir -p "$BIN"
# Copies: the tree may be rebuilt by someone else while this runs.
for b in warren warren-perf warren-bench; do
    cp "$ROOT/target/release/$b" "$BIN/" || die "missing target/release/$b"
done
RAW_TMP=$WORK/results.jsonl
: >"$RAW_TMP"

live_epmd() { ps -C epmd -o pid=,stat= 2>/dev/null | awk '$2 !~ /Z/ {print $1}'; }
EPMD_BEFORE=$(live_epmd | tr "\n" " ")
BROKER="" BROKER_PID="" LAUNCH_PID="" URI="" DATA=""

stop_broker() { # stop_broker term|kill
    local mode=${1:-term}
    [ -n "$BROKER" ] || return 0
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        if [ "$mode" = kill ]; then
            kill -9 "$BROKER_PID"
        elif [ "$BROKER" = warren ]; then
            kill -TERM "$BROKER_PID"
        else
            rabbitmqctl -n "$RABBIT_NODE" stop >/dev/null 2>&1 || kill -TERM "$BROKER_PID"
        fi
        for _ in $(seq 600); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$BROKER_PID" 2>/dev/null && { log "$BROKER did not stop in 60 s: SIGKILL"; kill -9 "$BROKER_PID"; }
    fi
    if [ -n "$LAUNCH_PID" ]; then
        # The launcher (warren itself, or su → sh → beam for RabbitMQ) ends with the broker.
        for _ in $(seq 100); do kill -0 "$LAUNCH_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$LAUNCH_PID" 2>/dev/null && kill -9 "$LAUNCH_PID" 2>/dev/null
    fi
    BROKER_PID="" LAUNCH_PID=""
}

cleanup() {
    stop_broker kill
    BROKER=""
    # epmd started by our RabbitMQ node: end it (by pid) unless another node registered with it.
    local p
    for p in $(live_epmd); do
        [[ " $EPMD_BEFORE " == *" $p "* ]] && continue
        epmd -names 2>/dev/null | grep -q '^name ' || kill "$p" 2>/dev/null
    done
    if [ "$KEEP_TMP" = 1 ]; then log "temp dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # wait_port PORT PID TIMEOUT_S
    local deadline=$(($(date +%s) + $3))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    return 1
}

# launch_broker NAME DATA_DIR: start it (no waiting); sets LAUNCH_PID, URI, T_LAUNCH.
launch_broker() {
    BROKER=$1 DATA=$2
    mkdir -p "$DATA"
    T_LAUNCH=$(now)
    if [ "$BROKER" = warren ]; then
        (cd "$WORK" && exec "$BIN/warren" serve --bind 127.0.0.1 --port "$WARREN_PORT" --http-port 0 \
            --data-dir "$DATA/data" --log-level warn) >>"$DATA/warren.log" 2>&1 &
        LAUNCH_PID=$! BROKER_PID=$!
        disown "$LAUNCH_PID" # no "Killed" job notice after kill -9
        URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
    else
        mkdir -p "$DATA/mnesia" "$DATA/log"
        [ -f "$DATA/enabled_plugins" ] || : >"$DATA/enabled_plugins" # no plugins: no management listener
        cat >"$DATA/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$RABBIT_PORT
log.file.level = warning
log.console = false
EOF
        chown -R rabbitmq:rabbitmq "$DATA"
        (
            cd /var/lib/rabbitmq || exit 1
            export RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_NODENAME=$RABBIT_NODE \
                RABBITMQ_MNESIA_BASE=$DATA/mnesia RABBITMQ_LOG_BASE=$DATA/log \
                RABBITMQ_ENABLED_PLUGINS_FILE=$DATA/enabled_plugins \
                RABBITMQ_CONFIG_FILE=$DATA/rabbitmq.conf RABBITMQ_PID_FILE=$DATA/beam.pid
            rm -f "$DATA/beam.pid"
            exec su rabbitmq -s /bin/sh -c "ulimit -n $NOFILE && exec /usr/lib/rabbitmq/bin/rabbitmq-server"
        ) >>"$DATA/stdout.log" 2>&1 &
        LAUNCH_PID=$! BROKER_PID=""
        disown "$LAUNCH_PID"
        URI="amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f"
    fi
}

# wait_broker TIMEOUT_S: until the AMQP port accepts (RabbitMQ: and await_startup); sets BROKER_PID.
wait_broker() {
    local timeout=${1:-120}
    wait_port "$([ "$BROKER" = warren ] && echo "$WARREN_PORT" || echo "$RABBIT_PORT")" "$LAUNCH_PID" "$timeout" \
        || { log "$BROKER did not start; log tail:"; tail -20 "$DATA"/*.log >&2; return 1; }
    T_READY=$(now)
    if [ "$BROKER" = rabbitmq ]; then
        rabbitmqctl -n "$RABBIT_NODE" await_startup --timeout "$timeout" >/dev/null 2>&1 \
            || { log "await_startup failed"; return 1; }
        BROKER_PID=$(cat "$DATA/beam.pid" 2>/dev/null)
        [ -n "$BROKER_PID" ] || BROKER_PID=$(rabbitmqctl -n "$RABBIT_NODE" eval 'os:getpid().' 2>/dev/null | tr -dc 0-9)
        [ -n "$BROKER_PID" ] || BROKER_PID=$(pgrep -f "beam.smp.*-sname $RABBIT_NODE" | head -1)
        [ -n "$BROKER_PID" ] || { log "no beam.smp pid"; return 1; }
    fi
    return 0
}

start_fresh() { # start_fresh NAME: new data dir, start, wait, record the empty start-up time
    local dir=$WORK/$1-$((++STARTS))
    launch_broker "$1" "$dir"
    wait_broker 120 || return 1
    record "{\"ready_s\":$(awk -v a="$T_LAUNCH" -v b="$T_READY" 'BEGIN{printf "%.3f", b - a}'),\"ok\":true}" start 0 start
}
STARTS=0

finish_broker() { stop_broker term; [ -n "$DATA" ] && rm -rf "$DATA"; BROKER="" DATA=""; }

reset_peak() { [ -n "$BROKER_PID" ] && echo 5 >"/proc/$BROKER_PID/clear_refs" 2>/dev/null; true; }

# record JSON SCENARIO REP PHASE: tag a result line and append it to the results.
record() {
    local json=$1 scen=$2 rep=$3 phase=$4 load
    load=$(cut -d' ' -f1 /proc/loadavg)
    [ -n "$json" ] && echo "$json" | jq -e . >/dev/null 2>&1 || json='{"ok":false,"errors":["no output"]}'
    echo "$json" | jq -c --arg b "$BROKER" --arg s "$scen" --argjson r "$rep" --arg p "$phase" \
        --argjson l "${LOAD_AT_START:-$load}" '. + {broker:$b, scen:$s, rep:$r, phase:$p, load1:$l}' >>"$RAW_TMP"
}

# perf SCENARIO REP PHASE ARGS...: one warren-perf run, recorded.
perf() {
    local scen=$1 rep=$2 phase=$3 out rc
    shift 3
    LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
    out=$("$BIN/warren-perf" --uri "$URI" --broker-pid "$BROKER_PID" --json "$@" 2>"$WORK/perf.err")
    rc=$?
    if ! echo "$out" | jq -e . >/dev/null 2>&1; then
        out=$(jq -cn --arg e "$(tail -3 "$WORK/perf.err")" '{ok:false, errors:[$e]}')
    fi
    out=$(echo "$out" | jq -c --argjson rc "$rc" --arg args "$*" '. + {rc:$rc, args:$args}')
    record "$out" "$scen" "$rep" "$phase"
    LOAD_AT_START=""
    log "  $BROKER s$scen rep $rep $phase: $(echo "$out" | jq -r '"pub \(.publish_rate // "-")/s, recv \(.consume_rate // "-")/s, cpu \(.broker_cpu_us_per_msg // "-") µs/msg, rss \(.broker_peak_rss_kb // "-") KiB, ok \(.ok)" + (if (.errors|length) > 0 then " \(.errors)" else "" end)')"
    return "$rc"
}

D=$DURATION
scenario_args() {
    case $1 in
    1) echo "-x 1 -y 1 -s 16 --autoack -z $D" ;;
    2) echo "-x 1 -y 1 -s 16 --prefetch 1000 -z $D" ;;
    3) echo "-x 1 -y 1 -s 1024 --persistent --confirm 1000 --prefetch 1000 -z $D" ;;
    4) echo "-x 1 -y 1 -s 16 --exchange-type fanout --queues 10 --autoack -z $D" ;;
    5) echo "-x 4 -y 4 -s 256 --prefetch 1000 -z $D" ;;
    6) echo "-x 1 -y 1 -s 16 --rate 10000 --autoack -z $D" ;;
    esac
}

run_scenario() { # run_scenario N (the broker is started by the caller)
    local s=$1 rep
    case $s in
    [1-6])
        for rep in $(seq "$REPS"); do
            reset_peak
            # shellcheck disable=SC2046
            perf "$s" "$rep" run $(scenario_args "$s")
        done ;;
    7)
        for rep in $(seq "$REPS"); do
            reset_peak
            # Confirms (window 1000) make the publish rate the broker's intake, not the client's
            # writes into socket buffers.
            perf 7 "$rep" publish -s 16 -C "$BACKLOG_COUNT" --confirm 1000 --publish-only --queue-name backlog
            perf 7 "$rep" drain -s 16 -C "$BACKLOG_COUNT" --consume-only --prefetch 1000 --queue-name backlog
        done ;;
    8)
        # Is it a stream? A second replay from `first` must see the messages again.
        local p1 p2 p3 why=""
        LOAD_AT_START=0
        p1=$("$BIN/warren-perf" --uri "$URI" --json --stream -C 1000 --confirm 1000 --publish-only --queue-name probe 2>&1)
        p2=$("$BIN/warren-perf" --uri "$URI" --json --stream -C 1000 --consume-only --keep --drain-timeout 2 \
            --consumer-args x-stream-offset=first --queue-name probe 2>&1)
        p3=$("$BIN/warren-perf" --uri "$URI" --json --stream -C 1000 --consume-only --drain-timeout 2 \
            --consumer-args x-stream-offset=first --queue-name probe 2>&1)
        if [ "$(echo "$p1" | jq -r '.sent' 2>/dev/null)" != 1000 ]; then
            why="declaring or publishing to an x-queue-type=stream queue failed: $(echo "$p1" | tail -1)"
        elif [ "$(echo "$p2" | jq -r '.received' 2>/dev/null)" != 1000 ]; then
            why="replay from first got $(echo "$p2" | jq -r '.received' 2>/dev/null) of 1000 messages"
        elif [ "$(echo "$p3" | jq -r '.received' 2>/dev/null)" != 1000 ]; then
            why="x-queue-type=stream is accepted but the queue behaves as a classic queue: a second replay from first got $(echo "$p3" | jq -r '.received' 2>/dev/null) of 1000 (acked messages are gone)"
        fi
        LOAD_AT_START=""
        record "$(jq -cn --arg w "$why" '{supported: ($w == ""), reason: $w, ok: true}')" 8 0 probe
        if [ -n "$why" ]; then log "  $BROKER s8: not a stream: $why"; return; fi
        for rep in $(seq "$REPS"); do
            reset_peak
            perf 8 "$rep" publish --stream -s "$STREAM_SIZE" -C "$STREAM_COUNT" --confirm 1000 --publish-only --queue-name stream
            perf 8 "$rep" drain --stream -s "$STREAM_SIZE" -C "$STREAM_COUNT" --consume-only --consumer-args x-stream-offset=first \
                --queue-name stream
        done ;;
    9)
        local out
        LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
        out=$("$BIN/warren-bench" idle --uri "$URI" --broker-pid "$BROKER_PID" \
            --connections "$IDLE_CONNECTIONS" --queues "$IDLE_QUEUES" 2>"$WORK/idle.err")
        echo "$out" | jq -e . >/dev/null 2>&1 || out=$(jq -cn --arg e "$(tail -3 "$WORK/idle.err")" '{ok:false, error:$e}')
        record "$out" 9 1 idle
        LOAD_AT_START=""
        log "  $BROKER s9: $out" ;;
    esac
}

# KiB used by the broker's data (warren: its data dir; RabbitMQ: the mnesia base, without logs).
data_du() { du -sk "$DATA/$([ "$BROKER" = warren ] && echo data || echo mnesia)" | cut -f1; }

# Issue 3: 1M persistent 1 KiB messages in a durable queue: confirmed publish, recovery time
# after a clean stop and after kill -9, disk use before and after consuming (acking) them all.
run_durability() {
    local n=$RECOVERY_COUNT q=recovery out mode
    start_fresh "$1" || return
    perf d 1 publish -s 1024 --persistent --confirm 1000 -C "$n" --publish-only --queue-name $q
    record "{\"du_kb\":$(data_du),\"ok\":true}" d 1 du_published
    for mode in term kill; do
        stop_broker "$mode"
        launch_broker "$BROKER" "$DATA"
        LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
        out=$("$BIN/warren-bench" depth --uri "$URI" --queue $q --expect "$n" --t0 "$T_LAUNCH" --timeout 600)
        wait_broker 600 || { record "$out" d 1 "recover_$mode"; LOAD_AT_START=""; return; }
        out=$(echo "$out" | jq -c --argjson rss "$(awk '/VmRSS/{print $2}' "/proc/$BROKER_PID/status")" '. + {rss_kb:$rss}')
        record "$out" d 1 "recover_$mode"
        LOAD_AT_START=""
        log "  $BROKER recovery after $mode: $out"
    done
    perf d 1 drain -s 1024 --persistent --prefetch 1000 -C "$n" --consume-only --keep --queue-name $q
    sleep 10 # RabbitMQ compacts its message store in the background; warren deletes segments on ack
    record "{\"du_kb\":$(data_du),\"ok\":true}" d 1 du_acked
    finish_broker
}

# --- 3-4. the runs -----------------------------------------------------------------------------
META=$WORK/meta.json
jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg nproc "$(nproc)" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
    --arg mem "$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)" \
    --arg kernel "$(uname -sr)" \
    --arg rabbit "$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null)" \
    --arg erlang "$(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null)" \
    --arg warren "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && echo ' + uncommitted changes')" \
    --arg rustc "$(rustc --version 2>/dev/null)" \
    --arg load_start "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg reps "$REPS" --arg duration "$DURATION" --arg scenarios "$SCENARIOS" \
    --arg backlog "$BACKLOG_COUNT" --arg stream "$STREAM_COUNT" --arg recovery "$RECOVERY_COUNT" \
    --arg idle_c "$IDLE_CONNECTIONS" --arg idle_q "$IDLE_QUEUES" \
    '{date:$date, nproc:$nproc, cpu:$cpu, mem:$mem, kernel:$kernel, rabbitmq:$rabbit, erlang:$erlang,
      warren:$warren, rustc:$rustc, load_start:$load_start, reps:($reps|tonumber),
      duration:($duration|tonumber), scenarios:$scenarios, backlog:($backlog|tonumber),
      stream:($stream|tonumber), recovery:($recovery|tonumber), idle_connections:($idle_c|tonumber),
      idle_queues:($idle_q|tonumber), args:{}}' >"$META"
for s in 1 2 3 4 5 6; do
    jq --arg s "$s" --arg a "$(scenario_args "$s")" '.args[$s] = $a' "$META" >"$META.tmp" && mv "$META.tmp" "$META"
done

T_BEGIN=$(date +%s)
IFS=, read -ra SCEN_LIST <<<"$SCENARIOS"
IFS=, read -ra BROKER_LIST <<<"$BROKERS"
for s in "${SCEN_LIST[@]}"; do
    for b in "${BROKER_LIST[@]}"; do
        log "scenario $s: $b (load $(cut -d' ' -f1-3 /proc/loadavg))"
        if [ "$s" = d ]; then
            run_durability "$b"
        else
            start_fresh "$b" || { finish_broker; continue; }
            run_scenario "$s"
            finish_broker
        fi
    done
done
T_END=$(date +%s)

# --- 5. the report -----------------------------------------------------------------------------
jq --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson secs "$((T_END - T_BEGIN))" \
    '. + {load_end:$load_end, total_s:$secs}' "$META" >"$META.tmp" && mv "$META.tmp" "$META"
mkdir -p "$(dirname "$RAW")" "$(dirname "$OUT")"
cp "$RAW_TMP" "$RAW"
python3 "$ROOT/bench/report.py" "$META" "$RAW_TMP" >"$OUT" || die "report failed"
log "done in $((T_END - T_BEGIN)) s: $OUT (raw results: $RAW)"
