//! The broker's side of durability: the handles to the definitions store and the commit thread,
//! the hooks that write durable exchanges, queues and bindings before their *-ok, and the confirm
//! waiter that tells a publisher's connection when its message is on disk.

use crate::broker::exchange::{Dest, Exchange, ExchangeKind, ExchangeOptions};
use crate::broker::queue::consumer::ClientEvent;
use crate::broker::queue::log::QueueLog;
use crate::broker::queue::QueueOptions;
use crate::broker::stream::{args as stream_args, StreamQueue};
use crate::broker::vhost::{is_stream, VHost};
use crate::error::{AmqpError, AmqpResult};
use crate::store::commit::{GroupCommit, Waiter};
use crate::store::definitions::Definitions;
use crate::store::definitions::{BindingDef, DestKind, ExchangeDef, QueueDef};
use crate::store::stream::StreamConfig;
use amq_protocol::types::FieldTable;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Tells a publisher's connection that publishes `seq..=last` on `channel` are durable (or
/// failed).
pub struct ConfirmWaiter {
    pub tx: UnboundedSender<ClientEvent>,
    pub channel: u16,
    pub epoch: u64,
    pub seq: u64,
    pub last: u64,
    /// The (first) append this waiter covers, checked against failed syncs: a run is nacked
    /// whole when its first append may be lost (a nack only withholds a promise).
    pub ticket: SyncTicket,
}

impl Waiter for ConfirmWaiter {
    fn done(self, durable: bool) {
        let ok = durable && self.ticket.n > self.ticket.poisoned.load(Ordering::Acquire);
        let _ = self.tx.send(ClientEvent::Stored {
            channel: self.channel,
            epoch: self.epoch,
            seq: self.seq,
            last: self.last,
            ok,
        });
    }

    fn absorb(&mut self, next: Self) -> Result<(), Self> {
        if next.seq == self.last + 1
            && next.channel == self.channel
            && next.epoch == self.epoch
            && next.tx.same_channel(&self.tx)
            && next.ticket.same_log(&self.ticket)
        {
            self.last = next.last;
            Ok(())
        } else {
            Err(next)
        }
    }
}

/// Numbers a log's appends and remembers the last one a failed sync may have lost. Linux reports
/// a writeback error to one fsync only, so a later fsync of the same file can succeed although
/// the pages are gone: a waiter for an append at or below the poisoned mark is nacked even then.
#[derive(Debug, Default)]
pub struct SyncGuard {
    appended: AtomicU64,
    prepared: AtomicU64,
    poisoned: Arc<AtomicU64>,
}

/// A waiter's claim: append number `n` of a log with this poisoned mark.
#[derive(Debug, Clone)]
pub struct SyncTicket {
    poisoned: Arc<AtomicU64>,
    n: u64,
}

impl SyncTicket {
    /// Do both tickets belong to appends to one log?
    pub fn same_log(&self, other: &SyncTicket) -> bool {
        Arc::ptr_eq(&self.poisoned, &other.poisoned)
    }
}

impl SyncGuard {
    /// Count an append (under the log's lock); returns the ticket a confirm waiter needs.
    pub fn appended(&self) -> SyncTicket {
        let n = self.appended.fetch_add(1, Ordering::AcqRel) + 1;
        SyncTicket {
            poisoned: self.poisoned.clone(),
            n,
        }
    }

    /// A sync is being prepared (under the log's lock): it covers every append so far.
    pub fn prepared(&self) {
        let n = self.appended.load(Ordering::Acquire);
        self.prepared.store(n, Ordering::Release);
    }

    /// That sync failed: whatever it covered may be lost.
    pub fn failed(&self) {
        let n = self.prepared.load(Ordering::Acquire);
        self.poisoned.fetch_max(n, Ordering::AcqRel);
    }
}

/// Durable state the broker writes to: definitions (redb) and the group-commit thread.
pub struct Persistence {
    pub defs: Definitions,
    pub commit: GroupCommit<ConfirmWaiter>,
    queues_dir: PathBuf,
    spill_dir: PathBuf,
    delayed_dir: PathBuf,
    streams_dir: PathBuf,
    spill_seq: AtomicU64,
    pub segment_size: u64,
    pub queue_memory_limit: u64,
    /// Confirms for stream messages wait for an fsync (`store.stream_fsync`).
    pub stream_fsync: bool,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("queues_dir", &self.queues_dir)
            .finish()
    }
}

impl Persistence {
    pub fn open(
        data_dir: &Path,
        segment_size: u64,
        queue_memory_limit: u64,
    ) -> io::Result<Persistence> {
        std::fs::create_dir_all(data_dir)?;
        // Spill logs hold copies of transient messages only: nothing in them survives a restart.
        let spill_dir = data_dir.join("spill");
        if spill_dir.exists() {
            std::fs::remove_dir_all(&spill_dir)?;
        }
        let defs =
            Definitions::open(&data_dir.join("definitions.redb")).map_err(io::Error::other)?;
        let commit = GroupCommit::start()?;
        Ok(Persistence {
            defs,
            commit,
            queues_dir: data_dir.join("queues"),
            spill_dir,
            delayed_dir: data_dir.join("delayed"),
            streams_dir: data_dir.join("streams"),
            spill_seq: AtomicU64::new(1),
            segment_size,
            queue_memory_limit,
            stream_fsync: true,
        })
    }

    /// A fresh log for a queue without one that has to page out.
    pub fn spill_log(&self) -> io::Result<Arc<QueueLog>> {
        let n = self.spill_seq.fetch_add(1, Ordering::Relaxed);
        QueueLog::open(
            &self.spill_dir.join(format!("{n:016x}")),
            self.segment_size,
            self.commit.clone(),
        )
    }

    /// Where durable delayed exchanges keep their held messages (one directory each).
    pub fn delayed_dir(&self) -> PathBuf {
        self.delayed_dir.clone()
    }

    /// The held-message log in `dir` (see `exchange::delayed`).
    pub fn delayed_log(&self, dir: &Path) -> io::Result<Arc<QueueLog>> {
        QueueLog::open(dir, self.segment_size, self.commit.clone())
    }

    /// The message log directory of the durable queue with store id `id`.
    pub fn queue_dir(&self, id: u64) -> PathBuf {
        self.queues_dir.join(format!("{id:016x}"))
    }
}

fn internal(e: impl std::fmt::Display) -> AmqpError {
    AmqpError::internal_error(format!("storage failure: {e}"))
}

/// Is this end of a binding durable? (A binding is durable when both ends are.)
fn durable_dest(d: &Dest) -> bool {
    match d {
        Dest::Queue(q) => q.store_id != 0,
        Dest::Exchange(e) => e.options.durable,
    }
}

fn binding_def(
    vhost: &str,
    source: &Exchange,
    dest: &Dest,
    key: &str,
    args: &FieldTable,
) -> BindingDef {
    let (dest_kind, dest) = match dest {
        Dest::Queue(q) => (DestKind::Queue, q.name.to_string()),
        Dest::Exchange(e) => (DestKind::Exchange, e.name.to_string()),
    };
    BindingDef {
        vhost: vhost.to_string(),
        source: source.name.to_string(),
        dest_kind,
        dest,
        routing_key: key.to_string(),
        arguments: args.clone(),
    }
}

/// The definition hooks: each commits (fsync) before returning, so before the method's *-ok.
impl Persistence {
    pub fn save_exchange(&self, vhost: &str, name: &str, o: &ExchangeOptions) -> AmqpResult<()> {
        let d = ExchangeDef {
            vhost: vhost.to_string(),
            name: name.to_string(),
            kind: o.kind.as_str().to_string(),
            durable: o.durable,
            auto_delete: o.auto_delete,
            internal: o.internal,
            arguments: o.arguments.clone(),
        };
        self.defs.put_exchange(&d).map_err(internal)
    }

    pub fn forget_exchange(&self, vhost: &str, name: &str) -> AmqpResult<()> {
        self.defs.delete_exchange(vhost, name).map_err(internal)
    }

    /// A new durable queue: a store id, an empty log, and its definition.
    pub fn create_queue(
        &self,
        vhost: &str,
        name: &str,
        o: &QueueOptions,
    ) -> AmqpResult<(u64, Arc<QueueLog>)> {
        let id = self.defs.next_queue_id().map_err(internal)?;
        let log = QueueLog::open(&self.queue_dir(id), self.segment_size, self.commit.clone())
            .map_err(internal)?;
        let d = QueueDef {
            vhost: vhost.to_string(),
            name: name.to_string(),
            durable: true,
            auto_delete: o.auto_delete,
            arguments: o.arguments.clone(),
            id,
        };
        self.defs.put_queue(&d).map_err(internal)?;
        Ok((id, log))
    }

    /// A new stream queue: a store id, its log directory, and its definition.
    pub fn create_stream(
        &self,
        vhost: &str,
        name: &str,
        o: &QueueOptions,
        cfg: StreamConfig,
    ) -> AmqpResult<(u64, Arc<StreamQueue>)> {
        let id = self.defs.next_queue_id().map_err(internal)?;
        let s = StreamQueue::open(
            &self.stream_dir(id),
            cfg,
            self.commit.clone(),
            self.stream_fsync,
        )
        .map_err(internal)?;
        let d = QueueDef {
            vhost: vhost.to_string(),
            name: name.to_string(),
            durable: true,
            auto_delete: false,
            arguments: o.arguments.clone(),
            id,
        };
        self.defs.put_queue(&d).map_err(internal)?;
        Ok((id, s))
    }

    fn stream_dir(&self, id: u64) -> PathBuf {
        self.streams_dir.join(format!("{id:016x}"))
    }

    pub fn forget_queue(&self, vhost: &str, name: &str) -> AmqpResult<()> {
        self.defs.delete_queue(vhost, name).map_err(internal)
    }

    pub fn save_binding(
        &self,
        vhost: &str,
        source: &Exchange,
        dest: &Dest,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        if !source.options.durable || !durable_dest(dest) {
            return Ok(());
        }
        self.defs
            .put_binding(&binding_def(vhost, source, dest, key, args))
            .map_err(internal)
    }

    pub fn forget_binding(
        &self,
        vhost: &str,
        source: &Exchange,
        dest: &Dest,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        if !source.options.durable || !durable_dest(dest) {
            return Ok(());
        }
        self.defs
            .delete_binding(&binding_def(vhost, source, dest, key, args))
            .map_err(internal)
    }

    /// Remove queue log directories no definition names: a crash between a queue's delete commit
    /// and the removal of its files leaves them behind.
    fn remove_orphan_logs(&self, queues: &[QueueDef]) {
        let Ok(dir) = std::fs::read_dir(&self.queues_dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| u64::from_str_radix(n, 16).ok());
            if id.is_some_and(|id| !queues.iter().any(|q| q.id == id)) {
                tracing::info!(dir = %entry.path().display(), "removing the log of a deleted queue");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!("could not remove {}: {e}", entry.path().display());
                }
            }
        }
    }

    /// Rebuild durable exchanges, queues (with their messages) and bindings into `vhosts`.
    /// Bring back the stored topology and messages of `vhosts`. `config_policies` (from the
    /// config file, never stored) are in place before any recovered message is judged against
    /// a TTL or delivery limit.
    pub fn restore(
        &self,
        vhosts: &[Arc<VHost>],
        config_policies: &[crate::broker::policy::PolicyDef],
    ) -> io::Result<()> {
        let loaded = self.defs.load().map_err(io::Error::other)?;
        let find = |name: &str| vhosts.iter().find(|v| &*v.name == name);
        for d in &loaded.exchanges {
            let (Some(v), Some(kind)) = (find(&d.vhost), ExchangeKind::parse(&d.kind)) else {
                tracing::warn!(vhost = %d.vhost, exchange = %d.name, "skipping a stored exchange");
                continue;
            };
            let o = ExchangeOptions {
                kind,
                durable: true,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: d.arguments.clone(),
            };
            v.restore_exchange(&d.name, o);
        }
        let keep: Vec<PathBuf> = loaded
            .exchanges
            .iter()
            .filter(|d| d.kind == ExchangeKind::Delayed.as_str())
            .map(|d| {
                crate::broker::exchange::delayed::log_dir(&self.delayed_dir, &d.vhost, &d.name)
            })
            .collect();
        crate::broker::exchange::delayed::remove_orphans(&self.delayed_dir, &keep);
        let started = std::time::Instant::now();
        let mut messages = 0usize;
        for d in &loaded.queues {
            let Some(v) = find(&d.vhost) else {
                tracing::warn!(vhost = %d.vhost, queue = %d.name, "skipping a stored queue");
                continue;
            };
            let o = QueueOptions {
                durable: true,
                exclusive: false,
                auto_delete: d.auto_delete,
                arguments: d.arguments.clone(),
            };
            if is_stream(&d.arguments) {
                let cfg = stream_args::config(&d.arguments).unwrap_or_default();
                let s = StreamQueue::open(
                    &self.stream_dir(d.id),
                    cfg,
                    self.commit.clone(),
                    self.stream_fsync,
                )?;
                messages += s.message_count() as usize;
                v.restore_stream(&d.name, o, d.id, s);
                continue;
            }
            let log = QueueLog::open(
                &self.queue_dir(d.id),
                self.segment_size,
                self.commit.clone(),
            )?;
            // A quorum queue records every delivery, so its delivery counts come back too.
            let quorum = crate::broker::queue::args::QueueType::of(&d.arguments)
                == crate::broker::queue::args::QueueType::Quorum;
            let restored = log.restore(&d.name, self.queue_memory_limit, quorum)?;
            messages += restored.messages.len() + restored.paged.len();
            v.restore_queue(&d.name, o, d.id, log, restored);
        }
        self.remove_orphan_logs(&loaded.queues);
        for b in &loaded.bindings {
            if let Some(v) = find(&b.vhost) {
                v.restore_binding(
                    &b.source,
                    b.dest_kind == DestKind::Queue,
                    &b.dest,
                    &b.routing_key,
                    &b.arguments,
                );
            }
        }
        for row in &loaded.policies {
            if let Some(v) = find(&row.vhost) {
                v.restore_policy(row.value.clone());
            }
        }
        for p in config_policies {
            if let Some(v) = find(&p.vhost) {
                v.set_config_policy(p.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            }
        }
        for v in vhosts {
            v.reapply_policies();
        }
        // Only now, with every exchange, binding and policy back, may recovered messages
        // expire (and be dead-lettered); x-expires leases start again from here.
        for v in vhosts {
            for q in v.queues() {
                q.start_timers();
            }
        }
        tracing::info!(
            exchanges = loaded.exchanges.len(),
            queues = loaded.queues.len(),
            bindings = loaded.bindings.len(),
            messages,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered durable state"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(t: &SyncTicket) -> bool {
        t.n <= t.poisoned.load(Ordering::Acquire)
    }

    #[test]
    fn consecutive_confirm_waiters_of_one_channel_merge_into_one_notice() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (other_tx, _other_rx) = tokio::sync::mpsc::unbounded_channel();
        let g = SyncGuard::default();
        let w = |tx: &UnboundedSender<ClientEvent>, channel, seq| ConfirmWaiter {
            tx: tx.clone(),
            channel,
            epoch: 1,
            seq,
            last: seq,
            ticket: g.appended(),
        };
        let mut first = w(&tx, 1, 5);
        assert!(first.absorb(w(&tx, 1, 6)).is_ok());
        // A waiter that already covers a run (the connection merges a batch's publishes).
        let mut run = w(&tx, 1, 7);
        run.last = 9;
        assert!(first.absorb(run).is_ok());
        let mut longer = w(&tx, 1, 3);
        longer.last = 4;
        assert!(longer.absorb(first).is_ok(), "3..=4 then 5..=9");
        let mut first = longer;
        assert!(
            first.absorb(w(&tx, 1, 11)).is_err(),
            "a gap: seq 10 went elsewhere"
        );
        assert!(first.absorb(w(&tx, 2, 10)).is_err(), "another channel");
        assert!(
            first.absorb(w(&other_tx, 1, 10)).is_err(),
            "another connection"
        );
        first.done(true);
        match rx.try_recv() {
            Ok(ClientEvent::Stored { seq, last, ok, .. }) => {
                assert_eq!((seq, last, ok), (3, 9, true))
            }
            other => panic!("expected one Stored notice, got {other:?}"),
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_failed_sync_poisons_exactly_what_it_covered() {
        let g = SyncGuard::default();
        let before = g.appended();
        g.prepared();
        let after_prepare = g.appended();
        g.failed();
        let later = g.appended();
        g.prepared();
        assert!(lost(&before), "covered by the failed sync");
        assert!(
            !lost(&after_prepare),
            "appended after that sync was prepared"
        );
        assert!(!lost(&later));
        // A later success does not clear the mark.
        assert!(lost(&before));
    }
}
