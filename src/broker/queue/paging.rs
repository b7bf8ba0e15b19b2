//! Keeps a queue's backlog from being bounded by RAM. Past the queue's memory limit, new messages
//! stay only in a log (the durable queue's own log, or a spill log for other queues) and the queue
//! keeps a 32-byte reference per message; they are read back in order, a batch at a time, when
//! consumers get to them. Order holds per lane (priority): once anything of a lane is paged out,
//! every newer message of that lane is paged out too, and requeued messages (older than anything
//! paged) go back in memory. A paged message's expiry is in its record: a lane whose head is
//! paged out is read back to learn it (see `ClassicState::expire_heads`).

use super::classic::ClassicState;
use super::log::QueueLog;
use super::Queue;
use crate::broker::deadletter::Reason;
use crate::broker::message::{Message, QueuedMessage};
use crate::store::{Location, RecordMeta};
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
    /// Returns counted before a restart (a delivery-limited queue; fits the struct's padding).
    pub returns: u16,
    pub size: u32,
}

/// What a message costs in memory while ready.
pub fn cost(m: &Message) -> u64 {
    m.body.len() as u64 + m.properties.len() as u64 + OVERHEAD
}

impl ClassicState {
    /// Should a new message for `lane` go to the log instead of memory?
    pub fn must_page(&self, lane: usize, limit: u64, m: &Message) -> bool {
        let l = &self.lanes[lane];
        !l.paged.is_empty() || (!l.ready.is_empty() && self.mem + cost(m) > limit)
    }

    /// Keep a new message (seq `next_seq`) only in `log`; `loc` is its record if it already has one.
    pub fn page_out(
        &mut self,
        lane: usize,
        log: &Arc<QueueLog>,
        msg: &Message,
        loc: Option<Location>,
        meta: RecordMeta,
    ) -> io::Result<()> {
        let seq = self.next_seq;
        let (loc, persistent) = match loc {
            Some(l) => (l, true),
            None => (log.append(seq, msg, false, meta)?.0, false),
        };
        self.next_seq += 1;
        self.paged_count += 1;
        self.paged_bytes += msg.size();
        self.ttl_seen |= meta.expires != 0;
        self.lanes[lane].paged.push_back(Paged {
            seq,
            loc,
            persistent,
            redelivered: false,
            returns: 0,
            size: u32::try_from(msg.size()).unwrap_or(u32::MAX),
        });
        Ok(())
    }

    /// Put a paged message recovered at start-up behind the others of its lane.
    pub fn restore_paged(&mut self, lane: usize, p: Paged) {
        let lane = lane.min(self.lanes.len() - 1);
        self.paged_count += 1;
        self.paged_bytes += u64::from(p.size);
        self.lanes[lane].paged.push_back(p);
    }

    /// Read the next batch of `lane`'s paged messages back into its ready list.
    pub fn page_in(&mut self, queue: &Queue, lane: usize, limit: u64) {
        let Some(log) = queue.page_log() else { return };
        let mut spilled: Vec<Location> = Vec::new();
        let mut n = 0;
        while n < PAGE_IN_BATCH && (self.lanes[lane].ready.is_empty() || self.mem < limit / 2) {
            let Some(p) = self.lanes[lane].paged.pop_front() else {
                break;
            };
            self.paged_count -= 1;
            self.paged_bytes -= u64::from(p.size);
            n += 1;
            match read_back(log, &p) {
                Ok(m) => {
                    if !p.persistent {
                        spilled.push(p.loc);
                    }
                    self.mem += cost(&m.msg);
                    self.ready_bytes += m.msg.size();
                    self.ready_count += 1;
                    self.lanes[lane].ready.push_back(m);
                }
                Err(e) => {
                    tracing::error!(queue = %queue.name, seq = p.seq, "lost a paged-out message: {e}");
                }
            }
        }
        log.release(&spilled);
    }

    /// A paged-out message leaves without delivery: its record goes, and it is read back only
    /// to be dead-lettered.
    pub fn discard_paged(&mut self, queue: &Queue, p: Paged, reason: Reason) {
        let Some(log) = queue.page_log() else { return };
        if self.dead_letters() {
            match read_back(log, &p) {
                Ok(m) => {
                    if !p.persistent {
                        log.release(&[p.loc]);
                    }
                    return self.discard(queue, m, reason);
                }
                Err(e) => {
                    tracing::error!(queue = %queue.name, seq = p.seq, "lost a paged-out message: {e}");
                }
            }
        }
        if p.persistent && !queue.is_deleted() {
            log.settle(&[p.seq], &[p.loc]);
        } else {
            log.release(&[p.loc]);
        }
    }

    /// The records of every paged message, before a purge: durable ones to settle (seqs, locs)
    /// and spilled copies to release.
    pub fn paged_records(&self) -> (Vec<u64>, Vec<Location>, Vec<Location>) {
        let (mut seqs, mut locs, mut spilled) = (Vec::new(), Vec::new(), Vec::new());
        for p in self.lanes.iter().flat_map(|l| l.paged.iter()) {
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

/// Read a paged message back from its log.
fn read_back(log: &QueueLog, p: &Paged) -> io::Result<QueuedMessage> {
    let m = log.read(p.loc)?;
    let msg = Message {
        exchange: m.exchange,
        routing_key: m.routing_key,
        persistent: Message::persistent_in(&m.properties),
        properties: m.properties,
        body: m.body,
        dead_lettered: m.meta.dead_lettered,
        bcc: m.meta.bcc,
    };
    let mut q = QueuedMessage {
        seq: p.seq,
        redelivered: p.redelivered,
        loc: p.persistent.then_some(p.loc),
        msg,
        expires: m.meta.expires,
        returns: u32::from(p.returns),
    };
    if q.returns > 0 {
        super::limits::show_delivery_count(&mut q);
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_paged_message_costs_32_bytes() {
        assert_eq!(std::mem::size_of::<super::Paged>(), 32);
    }
}
