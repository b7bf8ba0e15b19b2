#!/usr/bin/env python3
"""Interop test: a real Celery worker (and client) against a running warren broker.

Starts `celery worker` (solo pool, prefetch 1, acks_late) as a child process against AMQP_URL and
checks what task-queue users rely on: a task round trip, retries with a countdown, a group, a
chord (file-system result backend), a countdown on a quorum queue through Celery 5.5's native
delayed delivery (quorum queues with TTLs dead-lettering into each other), and a worker killed with SIGKILL in the middle of an
acks_late task whose message the broker then redelivers to a new worker, which completes it.
Exits 0 when every test passed; the last line is always "interop-celery: N passed, M failed".
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_TIMEOUT = int(os.environ.get("INTEROP_TIMEOUT", "120"))
STATE = tempfile.mkdtemp(prefix="warren-celery-")
os.environ["CELERY_STATE_DIR"] = STATE
sys.path.insert(0, HERE)

from celery import chord, group  # noqa: E402

import tasks  # noqa: E402

WAIT = 30
TESTS = []
workers = []


def test(fn):
    TESTS.append(fn)
    return fn


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def start_worker(name):
    log = open(os.path.join(STATE, f"{name}.log"), "w")
    p = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo",
         "--concurrency=1", "--loglevel=INFO", "-n", f"{name}@%h"],
        cwd=HERE, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )
    workers.append(p)
    return p


def stop_worker(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(cond, what, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise Failure(f"timed out waiting for {what}")


@test
def task_round_trip():
    r = tasks.add.delay(2, 3)
    check(r.get(timeout=WAIT) == 5, "add(2, 3) != 5")


@test
def retry_with_countdown():
    start = time.time()
    r = tasks.flaky.delay("flaky", 2, 1)
    attempts = r.get(timeout=WAIT)
    took = time.time() - start
    check(attempts == 3, f"expected success on attempt 3, got {attempts}")
    check(took >= 2.0, f"two 1 s countdowns took only {took:.2f} s")


@test
def group_of_tasks():
    res = group(tasks.add.s(i, i) for i in range(6))().get(timeout=WAIT)
    check(res == [0, 2, 4, 6, 8, 10], f"group result {res}")


@test
def chord_of_tasks():
    res = chord(tasks.add.s(i, 10) for i in range(4))(tasks.tsum.s()).get(timeout=WAIT)
    check(res == 46, f"chord result {res}")


@test
def native_delayed_delivery_on_a_quorum_queue():
    import pika

    start = time.time()
    r = tasks.add.apply_async((20, 22), queue="warren-interop-qq", countdown=2)
    check(r.get(timeout=WAIT) == 42, "add(20, 22) != 42")
    took = time.time() - start
    check(took >= 1.9, f"a 2 s countdown took only {took:.2f} s")
    # The worker set up the delay chain on the broker (else Celery falls back to holding the
    # message in the worker): its queues exist and are quorum queues.
    conn = pika.BlockingConnection(pika.URLParameters(tasks.AMQP_URL))
    try:
        ch = conn.channel()
        for level in (0, 27):
            ch.queue_declare(f"celery_delayed_{level}", passive=True)
    finally:
        conn.close()
    log = open(os.path.join(STATE, "first.log")).read()
    check("Failed to setup delayed delivery" not in log, "the worker could not set up delayed delivery")


@test
def killed_worker_task_is_redelivered():
    global worker
    r = tasks.slow.delay("slow", 3)
    wait_for(lambda: any(l.startswith("start") for l in tasks._lines("slow")), "the task to start")
    stop_worker(worker, signal.SIGKILL)
    worker = start_worker("second")
    check(r.get(timeout=WAIT) == "done", "task did not complete")
    lines = tasks._lines("slow")
    check(lines[0] == "start False" and "start True" in lines,
          f"expected a first start and a redelivered start, got {lines}")
    check(lines.count("done") == 1, f"task completed {lines.count('done')} times")


def main():
    global worker
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Failure("run timed out")))
    signal.alarm(RUN_TIMEOUT * 2)
    passed = failed = 0
    worker = start_worker("first")
    try:
        # The worker is ready once it answers a task.
        try:
            tasks.add.delay(0, 0).get(timeout=60)
        except Exception as e:  # noqa: BLE001
            print(f"FAIL worker did not start: {e!r}")
            failed += 1
        else:
            for t in TESTS:
                try:
                    t()
                    print(f"ok   {t.__name__}")
                    passed += 1
                except Exception as e:  # noqa: BLE001
                    print(f"FAIL {t.__name__}: {e!r}")
                    traceback.print_exc()
                    failed += 1
    finally:
        signal.alarm(0)
        for p in workers:
            stop_worker(p)
        if failed:
            for name in os.listdir(STATE):
                if name.endswith(".log"):
                    print(f"--- {name} (last 30 lines)")
                    with open(os.path.join(STATE, name)) as f:
                        print("".join(f.readlines()[-30:]))
        shutil.rmtree(STATE, ignore_errors=True)
    print(f"interop-celery: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
