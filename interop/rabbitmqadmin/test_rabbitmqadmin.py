#!/usr/bin/env python3
"""Interop test: RabbitMQ's own `rabbitmqadmin` CLI against a running warren's HTTP API.

rabbitmqadmin is the management tool operators script against; everything it does against
RabbitMQ must work against warren. Its path comes from RABBITMQADMIN (interop/run.sh finds
it: on PATH, or unpacked from Debian's rabbitmq-server package), the HTTP port from HTTP_PORT,
the AMQP URL from AMQP_URL (for the traffic its listings show). Objects go in a vhost of their
own, `rmqadmin`, created and deleted by the test.

Exits 0 when every check passed; the last line is always "interop-rabbitmqadmin: N passed, M failed".
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import pika

ADMIN = os.environ.get("RABBITMQADMIN", "rabbitmqadmin")
PORT = os.environ.get("HTTP_PORT", "15672")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
VHOST = "rmqadmin"
TIMEOUT = int(os.environ.get("INTEROP_TIMEOUT", "120"))


class Failure(Exception):
    pass


def admin(*args, vhost=VHOST, ok=True):
    """Run rabbitmqadmin; return its stdout (it exits non-zero on an API error)."""
    cmd = [sys.executable, ADMIN, "-H", "127.0.0.1", "-P", PORT, "-u", "guest", "-p", "guest",
           "-V", vhost, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if ok and r.returncode != 0:
        raise Failure(f"{' '.join(args)}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout if ok else r


def rows(*args):
    """A listing as JSON rows."""
    return json.loads(admin("-f", "raw_json", *args))


def expect(cond, what):
    if not cond:
        raise Failure(what)


def eventually(f, secs=10.0):
    """f() until it returns a true value (listings of live clients lag on RabbitMQ)."""
    deadline = time.monotonic() + secs
    while True:
        v = f()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.25)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def declare_list_and_delete_topology():
    admin("declare", "exchange", "name=ra.x", "type=topic", "durable=true")
    admin("declare", "queue", "name=ra.q", "durable=true", 'arguments={"x-max-length": 10}')
    admin("declare", "binding", "source=ra.x", "destination=ra.q", "routing_key=a.#")
    qs = {q["name"]: q for q in rows("list", "queues")}
    expect("ra.q" in qs and qs["ra.q"]["durable"], f"queue listing: {qs}")
    xs = {x["name"]: x for x in rows("list", "exchanges")}
    expect(xs.get("ra.x", {}).get("type") == "topic", f"exchange listing: {xs}")
    bs = rows("list", "bindings", "source", "destination", "routing_key")
    expect({"source": "ra.x", "destination": "ra.q", "routing_key": "a.#"} in bs, f"bindings: {bs}")
    table = admin("list", "queues", "name", "messages")
    expect("ra.q" in table and "+--" in table, f"table output: {table}")
    tsv = admin("-f", "tsv", "list", "exchanges", "name", "type")
    expect("ra.x\ttopic" in tsv, f"tsv output: {tsv}")
    admin("delete", "binding", "source=ra.x", "destination=ra.q", "destination_type=queue",
          "properties_key=a.%23")
    expect(rows("list", "bindings", "source") == [{"source": ""}], "binding not deleted")
    admin("delete", "queue", "name=ra.q")
    admin("delete", "exchange", "name=ra.x")
    expect("ra.q" not in admin("list", "queues", "name"), "queue not deleted")


@test
def publish_get_and_purge():
    admin("declare", "queue", "name=ra.msgs")
    out = admin("publish", "exchange=amq.default", "routing_key=ra.msgs", "payload=hello")
    expect("published" in out, out)
    admin("publish", "exchange=amq.default", "routing_key=ra.nowhere", "payload=lost")
    got = rows("get", "queue=ra.msgs", "ackmode=ack_requeue_true")
    expect(got and got[0]["payload"] == "hello" and got[0]["redelivered"] is False, f"get: {got}")
    got = rows("get", "queue=ra.msgs", "ackmode=ack_requeue_false", "encoding=base64")
    expect(got and got[0]["payload"] == "aGVsbG8=" and got[0]["redelivered"], f"get base64: {got}")
    expect(rows("get", "queue=ra.msgs") == [], "queue not empty after ack")
    admin("publish", "exchange=amq.default", "routing_key=ra.msgs", "payload=again")
    admin("purge", "queue", "name=ra.msgs")
    expect(rows("get", "queue=ra.msgs") == [], "purge left messages")
    admin("delete", "queue", "name=ra.msgs")


@test
def connections_channels_and_consumers_show_live_clients():
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL.rsplit("/", 1)[0] + "/" + VHOST))
    try:
        ch = conn.channel()
        ch.queue_declare("ra.live", auto_delete=True)
        ch.basic_consume("ra.live", lambda *a: None, consumer_tag="ra-tag")
        conn.process_data_events(0.2)
        def mine():
            cs = rows("list", "connections", "name", "user", "vhost")
            return [c for c in cs if c["vhost"] == VHOST]
        m = eventually(mine)
        expect(len(m) == 1 and m[0]["user"] == "guest", f"connections: {m}")
        chans = eventually(lambda: [c for c in rows("list", "channels", "name", "user")
                                    if c["name"].startswith(m[0]["name"])])
        expect(chans, "no channel listed")
        tags = eventually(lambda: [c["consumer_tag"] for c in rows("list", "consumers")])
        expect("ra-tag" in tags, f"consumers: {tags}")
        admin("close", "connection", f"name={m[0]['name']}")

        def gone():
            try:  # answer the broker's connection.close (RabbitMQ waits for close-ok)
                conn.process_data_events(0.1)
            except Exception:
                pass
            return mine() == []
        expect(eventually(gone), "connection not closed")
    finally:
        try:
            conn.close()
        except Exception:
            pass


@test
def users_permissions_vhosts_policies_and_limits():
    admin("declare", "user", "name=ra.user", "password=pw", "tags=monitoring")
    users = {u["name"]: u for u in rows("list", "users")}
    expect(users.get("ra.user", {}).get("tags") == ["monitoring"], f"users: {users}")
    admin("declare", "permission", f"vhost={VHOST}", "user=ra.user", "configure=", "write=.*",
          "read=.*")
    perms = rows("list", "permissions")
    expect(any(p["user"] == "ra.user" and p["write"] == ".*" for p in perms), f"perms: {perms}")
    admin("delete", "permission", f"vhost={VHOST}", "user=ra.user")
    admin("delete", "user", "name=ra.user")
    admin("declare", "policy", "name=ra.pol", "pattern=^ra\\.", 'definition={"max-length": 5}',
          "apply-to=queues")
    pols = rows("list", "policies")
    expect(any(p["name"] == "ra.pol" for p in pols), f"policies: {pols}")
    admin("delete", "policy", "name=ra.pol")
    admin("declare", "vhost_limit", f"vhost={VHOST}", "name=max-queues", "value=100")
    lims = rows("list", "vhost_limits")
    expect({"vhost": VHOST, "value": {"max-queues": 100}} in lims, f"limits: {lims}")
    expect(any(p["component"] == "vhost-limits" for p in rows("list", "parameters")),
           "vhost limits are not listed as parameters")
    admin("delete", "vhost_limit", f"vhost={VHOST}", "name=max-queues")
    expect(rows("list", "operator_policies") == [], "operator policies")
    expect(any(v["name"] == VHOST for v in rows("list", "vhosts")), "vhost listing")
    nodes = rows("list", "nodes")
    expect(len(nodes) == 1 and nodes[0]["running"], f"nodes: {nodes}")
    ov = admin("show", "overview")
    expect("rabbitmq_version" in ov, f"overview: {ov}")


@test
def export_and_import_definitions():
    admin("declare", "queue", "name=ra.def", "durable=true")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "defs.json")
        admin("export", path)
        with open(path) as f:
            defs = json.load(f)
        expect(any(q["name"] == "ra.def" for q in defs["queues"]), "export lacks the queue")
        admin("delete", "queue", "name=ra.def")
        admin("import", path)
    expect("ra.def" in admin("list", "queues", "name"), "import did not restore the queue")
    admin("delete", "queue", "name=ra.def")


@test
def errors_come_back_as_rabbitmqadmin_reports_them():
    r = admin("delete", "queue", "name=ra.missing", ok=False)
    expect(r.returncode != 0 and "Not found" in r.stdout + r.stderr, f"404: {r.stdout}{r.stderr}")
    r = admin("declare", "queue", "name=ra.bad", 'arguments={"x-max-length": "x"}', ok=False)
    expect(r.returncode != 0, "a bad argument was accepted")
    r = subprocess.run([sys.executable, ADMIN, "-P", PORT, "-u", "guest", "-p", "wrong",
                        "list", "queues"], capture_output=True, text=True, timeout=TIMEOUT)
    expect(r.returncode != 0 and "Access refused" in r.stdout + r.stderr,
           f"bad password: {r.stdout}{r.stderr}")


def main():
    passed = failed = 0
    try:
        admin("declare", "vhost", f"name={VHOST}", vhost="/")
        admin("declare", "permission", f"vhost={VHOST}", "user=guest", "configure=.*",
              "write=.*", "read=.*", vhost="/")
        for t in TESTS:
            try:
                t()
                print(f"ok   {t.__name__}", flush=True)
                passed += 1
            except Exception as e:
                print(f"FAIL {t.__name__}: {e}", flush=True)
                if not isinstance(e, Failure):
                    traceback.print_exc()
                failed += 1
        admin("delete", "vhost", f"name={VHOST}", vhost="/")
    except Exception as e:
        print(f"FAIL setup: {e}", flush=True)
        failed += 1
    print(f"interop-rabbitmqadmin: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
