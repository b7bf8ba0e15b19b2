//! Transactions (`tx.select`, `tx.commit`, `tx.rollback`), as RabbitMQ implements them for AMQP
//! 0-9-1: on a transactional channel, publishes and acks / nacks / rejects are buffered and
//! applied together at commit; rollback drops the publishes and puts the settled deliveries back
//! among the unacked ones. `commit-ok` is sent once every persistent message the commit wrote to
//! a durable queue is on disk (the same group-commit waiters as publisher confirms), and mandatory
//! returns of the commit go out before it. A channel is transactional or in confirm mode, never
//! both (406).

use super::channel::{for_each_run, Settles, Unacked};
use super::publish::Outgoing;
use super::Conn;
use crate::broker::exchange::Exchange;
use crate::broker::stats::Stat;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::protocol::{tx, AMQPClass};
use std::collections::VecDeque;
use std::sync::Arc;

/// What a client's settlement does to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// basic.ack
    Ack,
    /// basic.nack / basic.reject with requeue
    Requeue,
    /// basic.nack / basic.reject without requeue
    Discard,
}

/// The uncommitted work of a transactional channel.
#[derive(Debug, Default)]
pub struct Tx {
    publishes: Vec<(Arc<Exchange>, Outgoing)>,
    settles: Vec<(SettleKind, Unacked)>,
    /// Commits applied and waiting for log syncs, oldest first: commit-oks go out in order.
    committing: VecDeque<Committing>,
    /// Numbers commits; a sync reports back with the number (a transactional channel has no
    /// confirm sequence numbers to confuse it with).
    commits: u64,
}

#[derive(Debug)]
struct Committing {
    seq: u64,
    waits: u32,
    failed: bool,
}

impl Tx {
    pub fn publish(&mut self, ex: Arc<Exchange>, out: Outgoing) {
        self.publishes.push((ex, out));
    }

    pub fn settle(&mut self, kind: SettleKind, items: impl Iterator<Item = Unacked>) {
        self.settles.extend(items.map(|u| (kind, u)));
    }

    /// Deliveries settled in the transaction: still unacked as far as their queues know.
    pub fn into_unacked(self) -> impl Iterator<Item = Unacked> {
        self.settles.into_iter().map(|(_, u)| u)
    }
}

/// Apply a client settlement: acks and discards are settled at the end of the batch, requeues
/// go back to their queues now, and so do discards from a queue with a dead-letter exchange
/// (it needs the messages themselves).
pub fn apply_settle(settles: &mut Settles, kind: SettleKind, items: impl Iterator<Item = Unacked>) {
    match kind {
        SettleKind::Requeue => {
            let items: Vec<Unacked> = items.collect();
            for_each_run(items, |q, consumer, msgs| q.requeue(consumer, msgs));
        }
        SettleKind::Ack => items.for_each(|u| settles.acked(u)),
        SettleKind::Discard => {
            let mut dead = Vec::new();
            for u in items {
                match u.queue.dead_letters() {
                    true => dead.push(u),
                    false => settles.acked(u),
                }
            }
            if !dead.is_empty() {
                for_each_run(dead, |q, consumer, msgs| q.reject(consumer, msgs));
            }
        }
    }
}

fn not_transactional() -> AmqpError {
    AmqpError::precondition_failed("channel is not transactional")
}

impl Conn {
    pub(super) fn on_tx_select(&mut self, chan: u16) -> AmqpResult<()> {
        let ch = self.ch(chan)?;
        if ch.confirm {
            return Err(AmqpError::precondition_failed(
                "cannot switch from confirm to tx mode",
            ));
        }
        if ch.tx.is_none() {
            ch.tx = Some(Box::default());
        }
        self.send(
            chan,
            AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
        );
        Ok(())
    }

    pub(super) fn on_tx_commit(&mut self, chan: u16) -> AmqpResult<()> {
        let ch = self.ch(chan)?;
        let epoch = ch.epoch;
        let Some(t) = ch.tx.as_mut() else {
            return Err(not_transactional());
        };
        t.commits += 1;
        let seq = t.commits;
        let publishes = std::mem::take(&mut t.publishes);
        let settles = std::mem::take(&mut t.settles);
        let (mut waits, mut failed) = (0u32, false);
        for (ex, out) in publishes {
            // A message a length limit refuses is lost silently in a transaction, as without
            // confirms.
            let (_, w, f, _) = self.route_and_store(chan, &ex, out, Some((epoch, seq)));
            waits += w;
            failed |= f;
        }
        let acks = settles
            .iter()
            .filter(|(k, _)| *k == SettleKind::Ack)
            .count() as u64;
        self.ch(chan)?.info.stats.add(Stat::Ack, acks);
        // Settlements in the order the client made them, each kind in runs.
        let mut run: Vec<Unacked> = Vec::new();
        let mut run_kind = SettleKind::Ack;
        for (kind, u) in settles {
            if kind != run_kind && !run.is_empty() {
                apply_settle(&mut self.settles, run_kind, run.drain(..));
            }
            run_kind = kind;
            run.push(u);
        }
        apply_settle(&mut self.settles, run_kind, run.drain(..));
        if let Some(t) = self.ch(chan)?.tx.as_mut() {
            t.committing.push_back(Committing { seq, waits, failed });
        }
        self.finish_commits(chan);
        Ok(())
    }

    pub(super) fn on_tx_rollback(&mut self, chan: u16) -> AmqpResult<()> {
        let ch = self.ch(chan)?;
        let Some(t) = ch.tx.as_mut() else {
            return Err(not_transactional());
        };
        t.publishes.clear();
        let back: Vec<Unacked> = t.settles.drain(..).map(|(_, u)| u).collect();
        if !back.is_empty() {
            // Back among the unacked, in delivery-tag order (acks of a rolled-back transaction
            // never happened).
            let mut all: Vec<Unacked> = ch.unacked.drain(..).chain(back).collect();
            all.sort_by_key(|u| u.tag);
            ch.unacked = all.into();
            ch.info.unacked.store(
                ch.unacked.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.send(
            chan,
            AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
        );
        Ok(())
    }

    /// A log sync that commits `seq..=last` waited for finished.
    pub(super) fn tx_stored(&mut self, chan: u16, seq: u64, last: u64, ok: bool) {
        let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
            return;
        };
        let Some(t) = ch.tx.as_mut() else { return };
        for c in t
            .committing
            .iter_mut()
            .filter(|c| (seq..=last).contains(&c.seq))
        {
            c.waits = c.waits.saturating_sub(1);
            c.failed |= !ok;
        }
        self.finish_commits(chan);
    }

    /// Send commit-ok for every leading commit that waits for nothing more; a commit whose
    /// messages could not all be stored fails the channel, as RabbitMQ's "partial tx completion".
    fn finish_commits(&mut self, chan: u16) {
        loop {
            let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
                return;
            };
            let Some(t) = ch.tx.as_mut() else { return };
            if !t.committing.front().is_some_and(|c| c.waits == 0) {
                return;
            }
            let Some(c) = t.committing.pop_front() else {
                return;
            };
            if c.failed {
                self.fail(
                    chan,
                    AmqpError::precondition_failed("partial tx completion").on(90, 20),
                );
                return;
            }
            self.send(
                chan,
                AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
            );
        }
    }
}
