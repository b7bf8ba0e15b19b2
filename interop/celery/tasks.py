"""Celery tasks for the warren interop test (test_celery.py): the app, configured from the
environment (AMQP_URL, CELERY_STATE_DIR), and tasks that record what happened to them in files
under CELERY_STATE_DIR so the test can see attempts and redeliveries.

Results go to Celery's file-system backend under CELERY_STATE_DIR: it needs no other service and,
unlike rpc://, supports chords (through the chord_unlock task, which polls with retries over the
broker).

Besides the classic default queue, the worker consumes a quorum queue behind a topic exchange,
which makes Celery 5.5 use RabbitMQ's "native delayed delivery" for countdowns sent there: a
chain of 28 quorum queues with per-queue TTLs dead-lettering into each other through topic
exchanges (celery_delayed_27 … celery_delayed_0)."""

import os
import time

from celery import Celery
from kombu import Exchange, Queue

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
STATE = os.environ.get("CELERY_STATE_DIR", "/tmp/warren-celery")
RESULTS = os.path.join(STATE, "results")
os.makedirs(RESULTS, exist_ok=True)
BACKEND = "file://" + RESULTS

app = Celery("warren_interop", broker=AMQP_URL, backend=BACKEND)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_default_queue="warren-interop",
    result_expires=600,
    task_queues=[
        Queue("warren-interop", Exchange("warren-interop"), routing_key="warren-interop"),
        Queue(
            "warren-interop-qq",
            Exchange("warren-interop-qq", type="topic"),
            routing_key="warren-interop-qq",
            queue_arguments={"x-queue-type": "quorum"},
        ),
    ],
    worker_detect_quorum_queues=True,
)


def _append(name, line):
    with open(os.path.join(STATE, name), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _lines(name):
    try:
        with open(os.path.join(STATE, name), encoding="utf-8") as f:
            return [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return []


@app.task
def add(x, y):
    return x + y


@app.task
def tsum(values):
    return sum(values)


@app.task(bind=True, max_retries=5)
def flaky(self, key, fail_times, countdown):
    """Fails `fail_times` times (retrying after `countdown` s), then succeeds."""
    _append(key, f"{time.time()}")
    attempts = len(_lines(key))
    if attempts <= fail_times:
        raise self.retry(countdown=countdown, exc=RuntimeError(f"attempt {attempts}"))
    return attempts


@app.task(bind=True, acks_late=True)
def slow(self, key, seconds):
    """Marks its start (with the redelivered flag), sleeps, marks its end."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    _append(key, f"start {redelivered}")
    time.sleep(seconds)
    _append(key, "done")
    return "done"
