#!/usr/bin/env node
// Interop test: amqplib (Node.js) against a running warren broker.
//
// Connects to AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F) and checks publish with
// properties and headers, consume with manual ack, basic.get and get-empty, publisher confirms
// (createConfirmChannel), mandatory returns, requeue on reject, and that a 404 channel error
// leaves the connection usable.
//
// Each test uses its own connection and exclusive, server-named queues. Exits 0 when every test
// passed; the last line is always "interop-amqplib: N passed, M failed".
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const amqp = require('amqplib');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2F';
const RUN_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT || 120) * 1000;
const WAIT_MS = 10000;

const tests = [];
function test(name, fn) {
  tests.push({ name, fn });
}

// Rejects after `ms` so that a broker that stops answering fails the test instead of hanging it.
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A connection whose errors are recorded instead of crashing the process (an 'error' event with
// no listener throws), closed when the test ends.
async function withConnection(fn) {
  const conn = await within(WAIT_MS, 'connect', amqp.connect(AMQP_URL));
  const errors = [];
  conn.on('error', (e) => errors.push(e));
  try {
    await fn(conn, errors);
  } finally {
    try {
      await within(WAIT_MS, 'connection.close', conn.close());
    } catch (_) {
      // Already closed (e.g. by the broker): nothing to clean up.
    }
  }
}

async function channel(conn, confirm = false) {
  const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
  ch.errors = [];
  ch.on('error', (e) => ch.errors.push(e));
  return ch;
}

async function freshQueue(ch) {
  const ok = await ch.assertQueue('', { exclusive: true });
  assert.match(ok.queue, /^amq\.gen-/, 'server-named queues start with amq.gen-');
  return ok.queue;
}

const HEADERS = {
  'x-string': 'h\u00e9llo w\u00f6rld',
  'x-int': 42,
  'x-negative': -7,
  'x-big': 2 ** 40,
  'x-double': 2.5,
  'x-bool': true,
  'x-false': false,
  'x-table': { nested: 'yes', depth: { level: 2 } },
  'x-array': [1, 'two', true, { k: 'v' }],
  'x-bytes': Buffer.from([0, 1, 0xfe, 0xff]),
  'x-void': null,
};

function propsFor(i) {
  return {
    contentType: 'application/octet-stream',
    contentEncoding: 'identity',
    headers: { ...HEADERS, seq: i },
    deliveryMode: 2,
    priority: i % 10,
    correlationId: `corr-${i}`,
    replyTo: 'interop-replies',
    expiration: '600000',
    messageId: `msg-${i}`,
    timestamp: 1700000000 + i,
    type: 'interop.test',
    userId: 'guest',
    appId: 'interop-amqplib',
  };
}

function bodyFor(i) {
  const b = Buffer.alloc(i * 13);
  for (let k = 0; k < b.length; k++) b[k] = (i * 7 + k) % 256;
  return b;
}

function checkProps(props, i) {
  const expected = propsFor(i);
  for (const key of Object.keys(expected)) {
    if (key === 'headers') continue;
    assert.deepEqual(props[key], expected[key], `message ${i} property ${key}`);
  }
  assert.deepEqual(props.headers, expected.headers, `message ${i} headers`);
}

test('publish_consume_ack', () =>
  withConnection(async (conn) => {
    // A confirm channel, so that the count below is exact once every publish is confirmed.
    const ch = await channel(conn, true);
    const q = await freshQueue(ch);
    const n = 100;
    for (let i = 0; i < n; i++) ch.sendToQueue(q, bodyFor(i), propsFor(i));
    await within(WAIT_MS, 'confirms', ch.waitForConfirms());
    const declared = await ch.checkQueue(q);
    assert.equal(declared.messageCount, n, 'ready messages after publishing');

    await ch.prefetch(10);
    let seen = 0;
    let consumerTag;
    await within(
      WAIT_MS,
      `consuming ${n} messages`,
      new Promise((resolve, reject) => {
        ch.consume(
          q,
          (msg) => {
            try {
              assert.ok(msg !== null, 'consumer cancelled by the broker');
              assert.equal(msg.fields.deliveryTag, seen + 1, 'delivery tags count from 1');
              assert.equal(msg.fields.redelivered, false, 'not redelivered');
              assert.ok(msg.content.equals(bodyFor(seen)), `message ${seen} body`);
              checkProps(msg.properties, seen);
              ch.ack(msg);
              seen += 1;
              if (seen === n) resolve();
            } catch (e) {
              reject(e);
            }
          },
          { noAck: false },
        )
          .then((ok) => {
            consumerTag = ok.consumerTag;
            assert.match(consumerTag, /^amq\.ctag-/, 'server consumer tags start with amq.ctag-');
          })
          .catch(reject);
      }),
    );
    await ch.cancel(consumerTag);
    const after = await ch.checkQueue(q);
    assert.equal(after.messageCount, 0, 'messages left after acking all');
    assert.equal(after.consumerCount, 0, 'consumers left after cancel');
  }));

test('large_message_spans_frames', () =>
  withConnection(async (conn) => {
    const ch = await channel(conn);
    const q = await freshQueue(ch);
    const body = crypto.randomBytes(1024 * 1024 + 17);
    ch.sendToQueue(q, body);
    const msg = await ch.get(q, { noAck: true });
    assert.ok(msg, 'basic.get returned get-empty');
    assert.equal(msg.content.length, body.length, 'large body length');
    assert.ok(msg.content.equals(body), 'large body bytes');
  }));

test('basic_get_message_count', () =>
  withConnection(async (conn) => {
    const ch = await channel(conn);
    const q = await freshQueue(ch);
    for (let i = 0; i < 3; i++) ch.sendToQueue(q, Buffer.from(`job-${i}`));
    for (let i = 0; i < 3; i++) {
      const msg = await ch.get(q, { noAck: false });
      assert.ok(msg, `get ${i}: get-empty with messages queued`);
      assert.equal(msg.content.toString(), `job-${i}`, `get ${i} body (FIFO)`);
      assert.equal(msg.fields.messageCount, 2 - i, `get ${i} messageCount (messages left)`);
      ch.ack(msg);
    }
  }));

test('basic_get_empty', () =>
  withConnection(async (conn) => {
    const ch = await channel(conn);
    const q = await freshQueue(ch);
    const msg = await ch.get(q, { noAck: false });
    assert.equal(msg, false, 'get on an empty queue returns false (get-empty)');
    ch.sendToQueue(q, Buffer.from('x'));
    const again = await ch.get(q, { noAck: true });
    assert.ok(again && again.content.toString() === 'x', 'get after get-empty');
  }));

test('publisher_confirms', () =>
  withConnection(async (conn) => {
    const ch = await channel(conn, true);
    const q = await freshQueue(ch);
    const acks = [];
    for (let i = 0; i < 50; i++) {
      acks.push(
        new Promise((resolve, reject) => {
          ch.sendToQueue(q, Buffer.from(`confirmed-${i}`), { persistent: true }, (err) =>
            err ? reject(new Error(`message ${i} nacked`)) : resolve(),
          );
        }),
      );
    }
    await within(WAIT_MS, 'confirms for 50 messages', Promise.all(acks));
    await within(WAIT_MS, 'waitForConfirms', ch.waitForConfirms());
    const declared = await ch.checkQueue(q);
    assert.equal(declared.messageCount, 50, 'confirmed messages in the queue');
  }));

test('mandatory_unroutable_is_returned', () =>
  withConnection(async (conn) => {
    const ch = await channel(conn, true);
    const missing = `interop-amqplib-nowhere-${crypto.randomUUID()}`;
    const returned = new Promise((resolve) => ch.once('return', resolve));
    const confirmed = new Promise((resolve, reject) => {
      ch.publish('', missing, Buffer.from('lost'), { mandatory: true }, (err) =>
        err ? reject(new Error('unroutable message nacked')) : resolve(),
      );
    });
    const msg = await within(WAIT_MS, 'basic.return', returned);
    assert.equal(msg.fields.replyCode, 312, 'basic.return reply code');
    assert.equal(msg.fields.routingKey, missing, 'returned routing key');
    assert.equal(msg.content.toString(), 'lost', 'returned body');
    await within(WAIT_MS, 'ack after the return', confirmed);
  }));

test('reject_requeue_redelivers', () =>
  withConnection(async (conn) => {
    const ch = await channel(conn);
    const q = await freshQueue(ch);
    ch.sendToQueue(q, Buffer.from('again'));
    const first = await ch.get(q, { noAck: false });
    assert.ok(first && !first.fields.redelivered, 'first get');
    ch.reject(first, true);
    const second = await ch.get(q, { noAck: false });
    assert.ok(second, 'requeued message missing');
    assert.equal(second.fields.redelivered, true, 'requeued message is redelivered');
    assert.equal(second.content.toString(), 'again', 'requeued body');
    ch.nack(second, false, false);
    const third = await ch.get(q, { noAck: false });
    assert.equal(third, false, 'nack without requeue drops the message');
  }));

test('channel_error_404_then_new_channel_works', () =>
  withConnection(async (conn, connErrors) => {
    const ch = await channel(conn);
    const missing = `interop-amqplib-missing-${crypto.randomUUID()}`;
    const closed = new Promise((resolve) => ch.once('close', resolve));
    await assert.rejects(
      ch.checkQueue(missing),
      (e) => {
        assert.equal(e.code, 404, `error code (${e.message})`);
        assert.ok(e.message.includes(missing), `reply text names the queue: ${e.message}`);
        return true;
      },
      'passive declare of a missing queue',
    );
    await within(WAIT_MS, 'channel close after the error', closed);
    assert.equal(connErrors.length, 0, `connection errors: ${connErrors.join('; ')}`);

    const ch2 = await channel(conn);
    const q = await freshQueue(ch2);
    ch2.sendToQueue(q, Buffer.from('still works'));
    const msg = await ch2.get(q, { noAck: true });
    assert.ok(msg && msg.content.toString() === 'still works', 'new channel after a channel error');
  }));

function amqplibVersion() {
  // amqplib's package.json is not in its "exports": read it next to the resolved entry point.
  try {
    const fs = require('node:fs');
    const path = require('node:path');
    const pkg = path.join(path.dirname(require.resolve('amqplib')), 'package.json');
    return JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
  } catch (_) {
    return '?';
  }
}

async function main() {
  const watchdog = setTimeout(() => {
    console.error(`interop-amqplib: watchdog: no result after ${RUN_TIMEOUT_MS / 1000}s`);
    console.log('interop-amqplib: 0 passed, 1 failed');
    process.exit(1);
  }, RUN_TIMEOUT_MS);

  const version = amqplibVersion();
  console.log(`interop-amqplib: amqplib ${version} against ${AMQP_URL}`);
  let passed = 0;
  let failed = 0;
  for (const t of tests) {
    const start = Date.now();
    try {
      await t.fn();
      passed += 1;
      console.log(`ok   ${t.name} (${((Date.now() - start) / 1000).toFixed(2)}s)`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${t.name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  clearTimeout(watchdog);
  console.log(`interop-amqplib: ${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((e) => {
  console.log(`interop-amqplib: crashed: ${e && e.stack ? e.stack : e}`);
  console.log('interop-amqplib: 0 passed, 1 failed');
  process.exit(1);
});
