#!/usr/bin/env bash
# Interop with the C client: Debian's amqp-tools (amqp-declare-queue, amqp-publish, amqp-get,
# amqp-consume, amqp-delete-queue, built on rabbitmq-c) against warren, over plain AMQP, over
# TLS, and as a user whose permissions refuse something.
#
# Environment (set by interop/run.sh): AMQP_URL (guest), AMQP_RESTRICTED_URL (user c-user, whose
# configure/write/read patterns are all ^c-), AMQPS_URL and AMQP_CACERT (TLS; those cases are
# skipped when AMQPS_URL is empty). Prints "ok   <case>" / "FAIL <case>: <why>" and a final
# "interop-amqp-tools: N passed, M failed".
set -u

PASSED=0
FAILED=0
# Each tool call gets a bound: a hung client must not hang the run.
run() { timeout 20 "$@"; }
ok() { echo "ok   $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
check() { # name, expected, actual
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected [$2], got [$3]"; fi
}
contains() { # name, needle, haystack
    case "$3" in *"$2"*) ok "$1" ;; *) fail "$1" "[$3] does not contain [$2]" ;; esac
}

echo "interop-amqp-tools: $(dpkg-query -W -f '${Package} ${Version}' amqp-tools 2>/dev/null) against $AMQP_URL"
U="$AMQP_URL"
Q="c-tools-q"

check declare_queue "$Q" "$(run amqp-declare-queue -u "$U" -q "$Q" 2>&1)"
for i in 1 2 3; do run amqp-publish -u "$U" -r "$Q" -b "m$i" || fail publish "m$i"; done
check publish_then_get "m1" "$(run amqp-get -u "$U" -q "$Q" 2>&1)"
# amqp-consume runs the command once per message, with the body on stdin.
check consume_two "m2m3" "$(run amqp-consume -u "$U" -q "$Q" -c 2 cat 2>&1)"
# amqp-get exits 2 when the queue is empty.
out="$(run amqp-get -u "$U" -q "$Q" 2>&1)"
check get_on_empty_queue_exits_2 "2" "$?"
# amqp-delete-queue prints the number of messages the queue held.
check delete_queue "0" "$(run amqp-delete-queue -u "$U" -q "$Q" 2>&1)"
out="$(run amqp-get -u "$U" -q "$Q" 2>&1)"
contains get_deleted_queue_is_404 "server channel error 404, message: NOT_FOUND - no queue '$Q' in vhost '/'" "$out"

# Publishing to an exchange and routing through a binding made by the server side.
run amqp-declare-queue -u "$U" -q c-fan >/dev/null
run amqp-publish -u "$U" -e amq.fanout -r x -b lost   # no binding yet: dropped
check persistent_publish_with_headers "" "$(run amqp-publish -u "$U" -r c-fan -p -C text/plain -H 'x-a: 1' -b kept 2>&1)"
check get_persistent "kept" "$(run amqp-get -u "$U" -q c-fan 2>&1)"
run amqp-delete-queue -u "$U" -q c-fan >/dev/null

# A user whose permissions refuse: the tools report RabbitMQ's 403 text and exit non-zero.
R="$AMQP_RESTRICTED_URL"
check restricted_declare_allowed "c-mine" "$(run amqp-declare-queue -u "$R" -q c-mine 2>&1)"
out="$(run amqp-declare-queue -u "$R" -q other 2>&1)"
contains restricted_declare_refused "server channel error 403, message: ACCESS_REFUSED - configure access to queue 'other' in vhost '/' refused for user 'c-user'" "$out"
out="$(run amqp-publish -u "$R" -r c-mine -b x 2>&1)"
contains restricted_publish_to_default_exchange_refused "403, message: ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user 'c-user'" "$out"
run amqp-delete-queue -u "$U" -q c-mine >/dev/null
out="$(run amqp-get -u "${R/c-user:pw/c-user:wrong}" -q c-mine 2>&1)"
contains wrong_password "server connection error 403, message: ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" "$out"

if [ -n "${AMQPS_URL:-}" ]; then
    S="$AMQPS_URL"
    check tls_declare "c-tls" "$(run amqp-declare-queue --ssl --cacert "$AMQP_CACERT" -u "$S" -q c-tls 2>&1)"
    run amqp-publish --ssl --cacert "$AMQP_CACERT" -u "$S" -r c-tls -b secret || fail tls_publish "exit $?"
    check tls_get "secret" "$(run amqp-get --ssl --cacert "$AMQP_CACERT" -u "$S" -q c-tls 2>&1)"
    # Without the CA the client refuses the self-signed certificate.
    run amqp-get --ssl -u "$S" -q c-tls >/dev/null 2>&1
    check tls_unknown_ca_is_refused_by_the_client "1" "$?"
    run amqp-delete-queue -u "$U" -q c-tls >/dev/null
else
    echo "skip tls: no AMQPS_URL (openssl missing?)"
fi

echo "interop-amqp-tools: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
