//! Event-sourced bank ledger on a stream: every deposit and withdrawal is a fact appended once to
//! the stream `ledger` (a JSON body: account, amount in cents, kind, timestamp); balances are
//! never stored, only derived by replaying the facts.
//!
//! - a projector rebuilds every account's balance by replaying the stream from `first`;
//! - a live view starts from the projector's snapshot at the offset where the replay ended
//!   (`x-stream-offset` = that number) and tails new events, updating the balances as they come;
//! - a "time travel" query rebuilds the balances as of a past moment: it replays from `first`
//!   and stops at the first event stamped after it.
//!
//! - an account statement replays only one account's events, filtered by the broker
//!   (`x-stream-filter`; every event carries its account as `x-stream-filter-value`).
//!
//! Each view is checked against balances computed directly from the events the example
//! generated. Run against a broker: `cargo run --example ledger` (AMQP_URL defaults to
//! amqp://guest:guest@127.0.0.1:5672/%2f). The stream is deleted and declared afresh at start.
//! Exits non-zero if any view disagrees.

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

const STREAM: &str = "ledger";
const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// Events published before the projector runs, and after the live view started.
const HISTORY: usize = 300;
const LATER: usize = 200;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Balances in cents by account.
type Balances = BTreeMap<String, i64>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    account: String,
    /// Cents, always positive; `kind` says which way it goes.
    amount: i64,
    /// "deposit" or "withdrawal".
    kind: String,
    /// Milliseconds since the Unix epoch, when the event happened.
    timestamp: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The projection: one event applied to the balances.
fn apply(balances: &mut Balances, e: &Event) {
    let b = balances.entry(e.account.clone()).or_insert(0);
    match e.kind.as_str() {
        "deposit" => *b += e.amount,
        "withdrawal" => *b -= e.amount,
        other => eprintln!("ignoring an event of unknown kind {other:?}"),
    }
}

/// The expected balances, computed straight from the generated events (no stream involved).
fn expected(events: &[Event]) -> Balances {
    ACCOUNTS
        .iter()
        .filter(|a| events.iter().any(|e| e.account == **a))
        .map(|a| {
            let sum = |kind: &str| -> i64 {
                events
                    .iter()
                    .filter(|e| e.account == *a && e.kind == kind)
                    .map(|e| e.amount)
                    .sum()
            };
            (a.to_string(), sum("deposit") - sum("withdrawal"))
        })
        .collect()
}

/// Deterministic pseudo-random events (xorshift); a withdrawal never overdraws.
struct Bank {
    state: u64,
    balances: Balances,
}

impl Bank {
    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn event(&mut self) -> Event {
        let account = ACCOUNTS[(self.next_u64() % ACCOUNTS.len() as u64) as usize].to_string();
        let amount = 100 + (self.next_u64() % 50_000) as i64;
        let balance = self.balances.get(&account).copied().unwrap_or(0);
        let kind = if balance >= amount && self.next_u64() % 3 == 0 {
            "withdrawal"
        } else {
            "deposit"
        };
        let e = Event {
            account,
            amount,
            kind: kind.to_string(),
            timestamp: now_ms(),
        };
        apply(&mut self.balances, &e);
        e
    }
}

fn fmt_cents(c: i64) -> String {
    format!(
        "{}{}.{:02}",
        if c < 0 { "-" } else { "" },
        c.abs() / 100,
        c.abs() % 100
    )
}

fn print_balances(title: &str, b: &Balances) {
    println!("{title}");
    for (a, c) in b {
        println!("  {a:<6} {:>12}", fmt_cents(*c));
    }
}

fn stream_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("stream")),
    );
    t
}

/// Publish events with confirms; each carries its account as the stream filter value.
async fn publish(ch: &Channel, events: &[Event]) -> Result<(), Error> {
    let mut pending = Vec::new();
    for e in events {
        let mut h = FieldTable::default();
        h.insert(
            "x-stream-filter-value".into(),
            AMQPValue::LongString(LongString::from(e.account.as_str())),
        );
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(h);
        let body = serde_json::to_vec(e)?;
        let pc = ch
            .basic_publish(
                "".into(),
                STREAM.into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await?;
        pending.push(pc);
    }
    for pc in pending {
        if !pc.await?.is_ack() {
            return Err("the broker refused an event".into());
        }
    }
    Ok(())
}

fn stream_offset(d: &lapin::message::Delivery) -> Result<u64, Error> {
    match d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-stream-offset"))
    {
        Some(AMQPValue::LongLongInt(o)) => Ok(*o as u64),
        other => Err(format!("delivery without an x-stream-offset header: {other:?}").into()),
    }
}

/// Replay from `start` on a channel of its own (only events whose filter value is `filter`, if
/// given), handing each (offset, event) to `f` until it returns false. Returns the offset after the last event `f` saw.
async fn replay(
    conn: &Connection,
    start: AMQPValue,
    filter: Option<&str>,
    mut f: impl FnMut(u64, &Event) -> bool,
) -> Result<u64, Error> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(200, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), start);
    if let Some(v) = filter {
        args.insert("x-stream-filter".into(), AMQPValue::LongString(v.into()));
    }
    let mut c = ch
        .basic_consume(
            STREAM.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let mut next = 0;
    while let Some(d) = tokio::time::timeout(Duration::from_secs(10), c.next()).await? {
        let d = d?;
        let offset = stream_offset(&d)?;
        let e: Event = serde_json::from_slice(&d.data)?;
        d.ack(BasicAckOptions::default()).await?;
        next = offset + 1;
        if !f(offset, &e) {
            break;
        }
    }
    ch.close(200, "done".into()).await?;
    Ok(next)
}

/// The live view: from `snapshot` at offset `from`, applies every new event and publishes
/// (next offset, balances) after each.
async fn live_view(
    url: String,
    from: u64,
    snapshot: Balances,
    out: watch::Sender<(u64, Balances)>,
) -> Result<(), Error> {
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(50, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        AMQPValue::LongLongInt(from as i64),
    );
    let mut c = ch
        .basic_consume(
            STREAM.into(),
            "live-view".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let mut balances = snapshot;
    while let Some(d) = c.next().await {
        let d = d?;
        let offset = stream_offset(&d)?;
        let e: Event = serde_json::from_slice(&d.data)?;
        apply(&mut balances, &e);
        d.ack(BasicAckOptions::default()).await?;
        if out.send((offset + 1, balances.clone())).is_err() {
            break; // nobody is watching any more
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.queue_delete(STREAM.into(), QueueDeleteOptions::default())
        .await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(STREAM.into(), durable, stream_args())
        .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;

    let mut bank = Bank {
        state: 0x9e37_79b9_7f4a_7c15,
        balances: Balances::new(),
    };
    let mut events: Vec<Event> = Vec::new();
    for _ in 0..HISTORY {
        events.push(bank.event());
        if events.len() % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await; // a day at the bank
        }
    }
    publish(&ch, &events).await?;
    println!(
        "ledger: {HISTORY} events appended (offsets 0..{})",
        HISTORY - 1
    );

    // Projector: replay everything there is now.
    let end = ch
        .queue_declare(
            STREAM.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count() as u64;
    let mut projected = Balances::new();
    let next = replay(
        &conn,
        AMQPValue::LongString("first".into()),
        None,
        |o, e| {
            apply(&mut projected, e);
            o + 1 < end
        },
    )
    .await?;
    print_balances(
        &format!("projector: balances after replaying {next} events from first"),
        &projected,
    );

    // Live view: the projector's snapshot, then tailing from where it stopped.
    let (tx, mut rx) = watch::channel((next, projected.clone()));
    let live = tokio::spawn(live_view(url.clone(), next, projected.clone(), tx));
    let mut later = Vec::new();
    for i in 0..LATER {
        later.push(bank.event());
        if i % 20 == 19 {
            publish(&ch, &later[i - 19..=i]).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    events.extend(later);
    let total = events.len() as u64;
    println!(
        "ledger: {LATER} more events appended (offsets {HISTORY}..{})",
        total - 1
    );
    let caught_up =
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|(n, _)| *n >= total)).await;
    let caught_up = caught_up.ok().and_then(|r| r.ok()).map(|v| v.1.clone());
    let live_balances = match caught_up {
        Some(b) => b,
        None => {
            let seen = rx.borrow().0;
            live.abort();
            return Err(
                format!("FAILED: the live view stopped at offset {seen} of {total}").into(),
            );
        }
    };
    live.abort();
    print_balances(
        &format!("live: balances after tailing to offset {}", total - 1),
        &live_balances,
    );

    // Time travel: the balances as they were when event #as_of happened.
    let as_of = HISTORY + LATER / 2;
    let cut = events[as_of].timestamp;
    let mut then = Balances::new();
    replay(
        &conn,
        AMQPValue::LongString("first".into()),
        None,
        |o, e| {
            if e.timestamp > cut {
                return false;
            }
            apply(&mut then, e);
            o + 1 < total
        },
    )
    .await?;
    print_balances(
        &format!(
            "time travel: balances as of Unix time {}.{:03} (event #{as_of}, {} ms after the first)",
            cut / 1000,
            cut % 1000,
            cut - events[0].timestamp
        ),
        &then,
    );
    let expected_then: Vec<Event> = events
        .iter()
        .filter(|e| e.timestamp <= cut)
        .cloned()
        .collect();

    // An account statement: only bob's events, filtered by the broker (x-stream-filter).
    let last_bob = events.iter().rposition(|e| e.account == "bob").unwrap_or(0) as u64;
    let mut statement = Vec::new();
    let mut foreign = 0;
    replay(
        &conn,
        AMQPValue::LongString("first".into()),
        Some("bob"),
        |o, e| {
            foreign += usize::from(e.account != "bob");
            statement.push(e.clone());
            o < last_bob
        },
    )
    .await?;
    let bob_balance: i64 = statement
        .iter()
        .map(|e| {
            if e.kind == "deposit" {
                e.amount
            } else {
                -e.amount
            }
        })
        .sum();
    println!(
        "statement (x-stream-filter=bob): {} entries, balance {}",
        statement.len(),
        fmt_cents(bob_balance)
    );
    let bob_events: Vec<Event> = events
        .iter()
        .filter(|e| e.account == "bob")
        .cloned()
        .collect();

    let history_expected = expected(&events[..HISTORY]);
    let mut failed = Vec::new();
    if foreign > 0 || statement != bob_events {
        println!(
            "statement: {foreign} entries of other accounts; expected {} entries",
            bob_events.len()
        );
        failed.push("statement");
    }
    for (name, got, want) in [
        ("projector", &projected, history_expected),
        ("live view", &live_balances, expected(&events)),
        ("time travel", &then, expected(&expected_then)),
    ] {
        if *got != want {
            print_balances(&format!("{name}: expected"), &want);
            failed.push(name);
        }
    }
    conn.close(200, "bye".into()).await?; // the ledger stays: it is the record
    if !failed.is_empty() {
        return Err(format!("FAILED: {failed:?} disagree with the expected balances").into());
    }
    println!(
        "ok: projector, live view, time travel and statement agree with the expected balances"
    );
    Ok(())
}
