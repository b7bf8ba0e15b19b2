#!/usr/bin/env python3
"""Interop test: pika (Python) against a running warren broker.

Connects to AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F) and checks the things
applications do every day: publish with properties and headers, consume with manual ack, the
pull mode (basic.get, get-empty), publisher confirms, mandatory returns, requeue on reject, and
that a channel error leaves the connection usable.

Each test uses its own connection and exclusive, server-named queues, so nothing is left behind.
Exits 0 when every test passed; the last line is always "interop-pika: N passed, M failed".
"""

import datetime
import decimal
import os
import signal
import sys
import time
import traceback
import uuid

import pika
import pika.exceptions

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Whole-run watchdog: a broker that stops answering must fail the run, not hang it.
RUN_TIMEOUT = int(os.environ.get("INTEROP_TIMEOUT", "120"))
# How long a consumer waits for the next message before the test fails.
WAIT = 10.0

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def connect():
    params = pika.URLParameters(AMQP_URL)
    params.socket_timeout = 10
    params.blocked_connection_timeout = 30
    params.connection_attempts = 3
    params.retry_delay = 1
    return pika.BlockingConnection(params)


def fresh_queue(ch):
    """An exclusive, server-named queue (deleted with the connection)."""
    ok = ch.queue_declare(queue="", exclusive=True)
    name = ok.method.queue
    check(name.startswith("amq.gen-"), f"server-named queue should start with amq.gen-: {name!r}")
    return name


HEADERS = {
    "x-string": "h\u00e9llo w\u00f6rld",
    "x-int": 42,
    "x-negative": -7,
    "x-big": 2**40,
    "x-bool": True,
    "x-false": False,
    "x-decimal": decimal.Decimal("3.14"),
    "x-timestamp": datetime.datetime(2024, 5, 17, 12, 30, 45, tzinfo=datetime.timezone.utc),
    "x-table": {"nested": "yes", "depth": {"level": 2}},
    "x-array": [1, "two", True, {"k": "v"}],
    "x-bytes": b"\x00\x01\xfe\xff",
    "x-void": None,
}


def props_for(i):
    return pika.BasicProperties(
        content_type="application/octet-stream",
        content_encoding="identity",
        headers=dict(HEADERS, seq=i),
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=i % 10,
        correlation_id=f"corr-{i}",
        reply_to="interop-replies",
        expiration="600000",
        message_id=f"msg-{i}",
        timestamp=1700000000 + i,
        type="interop.test",
        user_id="guest",
        app_id="interop-pika",
    )


def body_for(i):
    # Binary-safe bodies of varying sizes, including empty and non-UTF-8 bytes.
    if i == 0:
        return b""
    return bytes((i * 7 + k) % 256 for k in range(i * 13))


def check_props(props, i):
    expected = props_for(i)
    for field in (
        "content_type",
        "content_encoding",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
    ):
        check_eq(getattr(props, field), getattr(expected, field), f"message {i} property {field}")
    check_eq(props.headers, expected.headers, f"message {i} headers")


@test
def publish_consume_ack():
    conn = connect()
    try:
        ch = conn.channel()
        q = fresh_queue(ch)
        # Confirm mode: each publish returns once the broker has it, so the count below is exact.
        ch.confirm_delivery()
        n = 100
        for i in range(n):
            ch.basic_publish(exchange="", routing_key=q, body=body_for(i), properties=props_for(i))
        ok = ch.queue_declare(queue=q, passive=True)
        check_eq(ok.method.message_count, n, "ready messages after publishing")

        ch.basic_qos(prefetch_count=10)
        seen = 0
        for method, props, body in ch.consume(q, auto_ack=False, inactivity_timeout=WAIT):
            if method is None:
                raise Failure(f"timed out after {seen} of {n} messages")
            check_eq(method.delivery_tag, seen + 1, "delivery tags count from 1 per channel")
            check(not method.redelivered, f"message {seen} should not be redelivered")
            check_eq(body, body_for(seen), f"message {seen} body")
            check_props(props, seen)
            ch.basic_ack(method.delivery_tag)
            seen += 1
            if seen == n:
                break
        ch.cancel()
        ok = ch.queue_declare(queue=q, passive=True)
        check_eq(ok.method.message_count, 0, "messages left after acking all")
        check_eq(ok.method.consumer_count, 0, "consumers left after cancel")
    finally:
        conn.close()


@test
def large_message_spans_frames():
    conn = connect()
    try:
        ch = conn.channel()
        q = fresh_queue(ch)
        body = os.urandom(1024 * 1024 + 17)  # far above frame_max: many body frames
        ch.basic_publish(exchange="", routing_key=q, body=body)
        method, _props, got = ch.basic_get(q, auto_ack=True)
        check(method is not None, "basic.get returned nothing")
        check_eq(len(got), len(body), "large body length")
        check(got == body, "large body bytes differ")
    finally:
        conn.close()


@test
def basic_get_message_count():
    conn = connect()
    try:
        ch = conn.channel()
        q = fresh_queue(ch)
        for i in range(3):
            ch.basic_publish(exchange="", routing_key=q, body=f"job-{i}".encode())
        for i in range(3):
            method, props, body = ch.basic_get(q, auto_ack=False)
            check(method is not None, f"get {i}: got get-empty with messages queued")
            check_eq(body, f"job-{i}".encode(), f"get {i} body (FIFO)")
            check_eq(method.message_count, 2 - i, f"get {i} message_count (messages left)")
            ch.basic_ack(method.delivery_tag)
    finally:
        conn.close()


@test
def basic_get_empty():
    conn = connect()
    try:
        ch = conn.channel()
        q = fresh_queue(ch)
        method, props, body = ch.basic_get(q, auto_ack=False)
        check(method is None and props is None and body is None, "expected get-empty")
        # The channel is still fine afterwards.
        ch.basic_publish(exchange="", routing_key=q, body=b"x")
        method, _props, body = ch.basic_get(q, auto_ack=True)
        check(method is not None and body == b"x", "get after get-empty")
    finally:
        conn.close()


@test
def publisher_confirms():
    conn = connect()
    try:
        ch = conn.channel()
        q = fresh_queue(ch)
        ch.confirm_delivery()
        for i in range(50):
            # Raises NackError / UnroutableError if the broker does not ack.
            ch.basic_publish(
                exchange="",
                routing_key=q,
                body=f"confirmed-{i}".encode(),
                properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
                mandatory=True,
            )
        ok = ch.queue_declare(queue=q, passive=True)
        check_eq(ok.method.message_count, 50, "confirmed messages in the queue")
    finally:
        conn.close()


@test
def mandatory_unroutable_is_returned():
    conn = connect()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        missing = f"interop-pika-nowhere-{uuid.uuid4().hex}"
        try:
            ch.basic_publish(exchange="", routing_key=missing, body=b"lost", mandatory=True)
        except pika.exceptions.UnroutableError as e:
            check_eq(len(e.messages), 1, "returned messages")
            check_eq(e.messages[0].method.reply_code, 312, "basic.return reply code")
            check_eq(e.messages[0].body, b"lost", "returned body")
        else:
            raise Failure("mandatory unroutable publish was not returned")
        # Not mandatory: silently dropped, still confirmed.
        ch.basic_publish(exchange="", routing_key=missing, body=b"dropped", mandatory=False)
    finally:
        conn.close()


@test
def reject_requeue_redelivers():
    conn = connect()
    try:
        ch = conn.channel()
        q = fresh_queue(ch)
        ch.basic_publish(exchange="", routing_key=q, body=b"again")
        method, _props, body = ch.basic_get(q, auto_ack=False)
        check(method is not None and not method.redelivered, "first get")
        ch.basic_reject(method.delivery_tag, requeue=True)
        method, _props, body = ch.basic_get(q, auto_ack=False)
        check(method is not None, "requeued message missing")
        check(method.redelivered, "requeued message should be redelivered=True")
        check_eq(body, b"again", "requeued body")
        ch.basic_nack(method.delivery_tag, requeue=False)
        method, _props, _body = ch.basic_get(q, auto_ack=False)
        check(method is None, "nack without requeue should drop the message")
    finally:
        conn.close()


@test
def channel_error_404_then_new_channel_works():
    conn = connect()
    try:
        ch = conn.channel()
        missing = f"interop-pika-missing-{uuid.uuid4().hex}"
        try:
            ch.queue_declare(queue=missing, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            check_eq(e.reply_code, 404, "passive declare of a missing queue")
            check(missing in e.reply_text, f"reply text should name the queue: {e.reply_text!r}")
        else:
            raise Failure("passive declare of a missing queue succeeded")
        check(ch.is_closed, "channel should be closed after a channel error")
        check(conn.is_open, "connection should survive a channel error")

        ch2 = conn.channel()
        q = fresh_queue(ch2)
        ch2.basic_publish(exchange="", routing_key=q, body=b"still works")
        method, _props, body = ch2.basic_get(q, auto_ack=True)
        check(method is not None and body == b"still works", "new channel after a channel error")
    finally:
        if conn.is_open:
            conn.close()


def main():
    def on_alarm(_signum, _frame):
        print(f"interop-pika: watchdog: no result after {RUN_TIMEOUT}s", file=sys.stderr)
        print("interop-pika: 0 passed, 1 failed", flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(RUN_TIMEOUT)

    print(f"interop-pika: pika {pika.__version__} against {AMQP_URL}", flush=True)
    passed = failed = 0
    for fn in TESTS:
        start = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, Failure):
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - start:.2f}s)", flush=True)
    signal.alarm(0)
    print(f"interop-pika: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
