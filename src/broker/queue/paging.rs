//! Keeps a queue's backlog from being bounded by RAM. Past the queue's memory limit, new messages
//! stay only in a log (the durable queue's own log, or a spill log for other queues) and the queue
//! keeps a 32-byte reference per message; they are read back in order, a batch at a time, when
//! consumers get to them. Order holds because once anything is paged out, every newer message is
//! paged out too, and requeued messages (older than anything paged) go back in memory.

use super::classic::ClassicState;
use super::log::QueueLog;
use super::Queue;
use crate::broker::message::{Message, QueuedMessage};
use crate::store::Location;
use std::io;
use std::sync::Arc;

/// Memory a message in the ready list costs besides its bytes (the list entry and `Bytes` heads).
const OVERHEAD: u64 = 192;
/// Messages read back per page-in.
const PAGE_IN_BATCH: usize = 512;

/// A message whose body lives only in a log.
#[derive(Debug, Clone, Copy)]
pub struct Paged {
    pub seq: u64,
    pub loc: Location,
    /// A persistent record of a durable queue: it stays needed until acked. Otherwise the record
    /// is only a spilled copy and goes once read back.
    pub persistent: bool,
    pub redelivered: bool,
    pub size: u32,
}

/// What a message costs in memory while ready.
pub fn cost(m: &Message) -> u64 {
    m.body.len() as u64 + m.properties.len() as u64 + OVERHEAD
}

impl ClassicState {
    /// Should a new message go to the log instead of memory?
    pub fn must_page(&self, limit: u64, m: &Message) -> bool {
        !self.paged.is_empty() || (!self.ready.is_empty() && self.mem + cost(m) > limit)
    }

    /// Keep a new message (seq `next_seq`) only in `log`; `loc` is its record if it already has one.
    pub fn page_out(
        &mut self,
        log: &Arc<QueueLog>,
        msg: &Message,
        loc: Option<Location>,
    ) -> io::Result<()> {
        let seq = self.next_seq;
        let (loc, persistent) = match loc {
            Some(l) => (l, true),
            None => (log.append(seq, msg, false)?.0, false),
        };
        self.next_seq += 1;
        self.paged_bytes += msg.size();
        self.paged.push_back(Paged {
            seq,
            loc,
            persistent,
            redelivered: false,
            size: u32::try_from(msg.size()).unwrap_or(u32::MAX),
        });
        Ok(())
    }

    /// Read the next batch of paged messages back into the ready list.
    pub fn page_in(&mut self, queue: &Queue, limit: u64) {
        let Some(log) = queue.page_log() else { return };
        let mut spilled: Vec<Location> = Vec::new();
        let mut n = 0;
        while n < PAGE_IN_BATCH && (self.ready.is_empty() || self.mem < limit / 2) {
            let Some(p) = self.paged.pop_front() else {
                break;
            };
            self.paged_bytes -= u64::from(p.size);
            n += 1;
            match log.read(p.loc) {
                Ok(m) => {
                    let msg = Message {
                        exchange: m.exchange,
                        routing_key: m.routing_key,
                        properties: m.properties,
                        body: m.body,
                        persistent: m.persistent,
                    };
                    if !p.persistent {
                        spilled.push(p.loc);
                    }
                    self.mem += cost(&msg);
                    self.ready_bytes += msg.size();
                    self.ready.push_back(QueuedMessage {
                        seq: p.seq,
                        redelivered: p.redelivered,
                        loc: p.persistent.then_some(p.loc),
                        msg,
                    });
                }
                Err(e) => {
                    tracing::error!(queue = %queue.name, seq = p.seq, "lost a paged-out message: {e}");
                }
            }
        }
        log.release(&spilled);
    }

    /// The records of every paged message, before a purge: durable ones to settle (seqs, locs)
    /// and spilled copies to release.
    pub fn paged_records(&self) -> (Vec<u64>, Vec<Location>, Vec<Location>) {
        let (mut seqs, mut locs, mut spilled) = (Vec::new(), Vec::new(), Vec::new());
        for p in &self.paged {
            if p.persistent {
                seqs.push(p.seq);
                locs.push(p.loc);
            } else {
                spilled.push(p.loc);
            }
        }
        (seqs, locs, spilled)
    }
}
