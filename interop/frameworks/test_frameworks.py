#!/usr/bin/env python3
"""Interop test: Python frameworks besides Celery against a running warren broker (AMQP_URL).

- dramatiq (its RabbitmqBroker, on pika): a worker runs tasks, retries a failing actor with
  backoff until it succeeds, and holds a delayed message until its time (dramatiq's `.DQ`
  delay queues and `.XQ` dead-letter queues with TTLs).
- aio-pika (on aiormq, asyncio): RPC over direct reply-to (`amq.rabbitmq.reply-to`), a
  transaction rolled back then committed, a headers-exchange binding, and a passive declare of
  a missing queue answered with 404 on a channel the robust connection reopens.
- kombu (Celery's messaging layer, on py-amqp): a priority queue delivering the highest
  priority first, with heartbeats kept over an idle stretch.

Exits 0 when every test passed; the last line is always "interop-frameworks: N passed, M failed".
"""

import asyncio
import os
import socket
import sys
import time
import traceback

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


@test
def dramatiq_retries_and_delays():
    import dramatiq
    from dramatiq import Worker
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=AMQP_URL)
    dramatiq.set_broker(broker)
    attempts, done, delayed = {}, [], []

    @dramatiq.actor(queue_name="warren-dramatiq", max_retries=3, min_backoff=100, max_backoff=200)
    def flaky(n):
        attempts[n] = attempts.get(n, 0) + 1
        if attempts[n] < 3:
            raise RuntimeError("fails twice")
        done.append(n)

    @dramatiq.actor(queue_name="warren-dramatiq")
    def later(n):
        delayed.append(time.time())

    worker = Worker(broker, worker_threads=2)
    worker.start()
    try:
        start = time.time()
        for i in range(5):
            flaky.send(i)
        later.send_with_options(args=(1,), delay=1500)
        deadline = time.time() + 30
        while time.time() < deadline and (len(done) < 5 or not delayed):
            time.sleep(0.1)
    finally:
        worker.stop()
        broker.close()
    check(sorted(done) == list(range(5)), f"done {sorted(done)}")
    check(all(a == 3 for a in attempts.values()), f"attempts {attempts}")
    check(delayed and delayed[0] - start >= 1.4, f"delayed message ran at {delayed}")


@test
def aio_pika_rpc_tx_headers_and_404():
    import aio_pika

    async def run():
        conn = await aio_pika.connect_robust(AMQP_URL)
        try:
            ch = await conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=10)
            q = await ch.declare_queue("warren-aio-rpc", auto_delete=True)

            async def serve(msg):
                async with msg.process():
                    reply = aio_pika.Message(b"re:" + msg.body, correlation_id=msg.correlation_id)
                    await ch.default_exchange.publish(reply, routing_key=msg.reply_to)

            await q.consume(serve)
            ch2 = await conn.channel()
            fut = asyncio.get_running_loop().create_future()
            rq = await ch2.get_queue("amq.rabbitmq.reply-to", ensure=False)
            await rq.consume(lambda m: fut.set_result(m.body), no_ack=True)
            await ch2.default_exchange.publish(
                aio_pika.Message(b"x", reply_to="amq.rabbitmq.reply-to", correlation_id="1"),
                routing_key="warren-aio-rpc",
            )
            body = await asyncio.wait_for(fut, 10)
            check(body == b"re:x", f"rpc reply {body!r}")

            ch3 = await conn.channel(publisher_confirms=False)
            tq = await ch3.declare_queue("warren-aio-tx", auto_delete=True)
            tx = ch3.transaction()
            await tx.select()
            await ch3.default_exchange.publish(aio_pika.Message(b"1"), routing_key="warren-aio-tx")
            await tx.rollback()
            await ch3.default_exchange.publish(aio_pika.Message(b"2"), routing_key="warren-aio-tx")
            await tx.commit()
            m = await tq.get(no_ack=True, fail=False)
            check(m is not None and m.body == b"2", f"after rollback then commit: {m and m.body!r}")
            check(await tq.get(no_ack=True, fail=False) is None, "the rolled-back message arrived")

            hx = await ch.declare_exchange("warren-aio-h", aio_pika.ExchangeType.HEADERS, auto_delete=True)
            hq = await ch.declare_queue("", exclusive=True)
            await hq.bind(hx, arguments={"x-match": "any", "a": 1, "b": "two"})
            await hx.publish(aio_pika.Message(b"h", headers={"b": "two"}), routing_key="")
            await hx.publish(aio_pika.Message(b"no", headers={"c": "x"}), routing_key="")
            m = await hq.get(no_ack=True, timeout=5)
            check(m.body == b"h", f"headers routing gave {m.body!r}")
            check(await hq.get(no_ack=True, fail=False) is None, "an unmatched message was routed")

            try:
                await ch.declare_queue("warren-aio-missing", passive=True)
                raise Failure("a passive declare of a missing queue succeeded")
            except aio_pika.exceptions.ChannelNotFoundEntity as e:
                check("NOT_FOUND" in str(e), f"404 text {e}")
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(run(), 60))


@test
def kombu_priority_queue_and_heartbeats():
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    ex = Exchange("warren-kombu", type="topic", durable=True)
    q = Queue("warren-kombu-pq", ex, routing_key="a.#", max_priority=10)
    got = []
    with Connection(AMQP_URL, heartbeat=4) as c:
        with c.channel() as ch:
            q(ch).declare()
            q(ch).purge()
            p = Producer(ch, exchange=ex)
            for pr in (1, 9, 5):
                p.publish({"p": pr}, routing_key="a.b", priority=pr, delivery_mode=2)

        def on(body, msg):
            got.append(body["p"])
            msg.ack()

        with Consumer(c, [q], callbacks=[on], prefetch_count=1):
            for _ in range(3):
                c.drain_events(timeout=5)
        check(got == [9, 5, 1], f"priority order {got}")
        # Idle for three heartbeat intervals: the connection must stay up both ways.
        end = time.time() + 9
        while time.time() < end:
            try:
                c.drain_events(timeout=0.5)
            except socket.timeout:
                pass
            c.heartbeat_check()
        with c.channel() as ch:
            q(ch).delete()


def main():
    passed = failed = 0
    for t in TESTS:
        began = time.time()
        try:
            t()
            print(f"ok   {t.__name__} ({time.time() - began:.2f}s)")
            passed += 1
        except Exception as e:  # noqa: BLE001
            print(f"FAIL {t.__name__}: {e!r}")
            traceback.print_exc()
            failed += 1
    print(f"interop-frameworks: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
