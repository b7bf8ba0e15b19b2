//! The connection's writer: one task per connection owns the socket's write half and writes
//! whatever the connection task has queued, as one `write_all` per wake-up, so a burst of
//! deliveries costs one syscall. Buffers are swapped, not reallocated.
//!
//! A peer that stops reading cannot grow the broker's memory: past [`HIGH_WATER`] queued bytes
//! the connection takes no more deliveries, past [`READ_PAUSE`] it stops reading (and so
//! answering) the peer, and when the socket takes no byte for the configured
//! `write_stall_timeout` the writer gives up and the connection is closed.

use bytes::BytesMut;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Past this many queued bytes the connection stops taking deliveries until the writer catches up.
pub const HIGH_WATER: usize = 1 << 20;

/// Past this many bytes of output (queued plus being encoded) the connection stops handling
/// frames, and so stops reading its socket: a peer that pipelines requests (basic.get, declares)
/// without reading the answers would otherwise grow the output without bound.
pub const READ_PAUSE: usize = 4 << 20;

/// An output buffer bigger than this is dropped once written instead of kept for reuse. Under
/// load the queued output legitimately reaches [`READ_PAUSE`] (a fast consumer's batches pile up
/// while a write is in flight), and reallocating such buffers on every write costs page faults:
/// only what a huge message grew them to is let go.
const KEEP_CAPACITY: usize = 2 * READ_PAUSE;

/// Bytes waiting for the writer, shared between the connection task and the writer task.
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Mutex<BytesMut>,
    queued: AtomicUsize,
    /// Wakes the writer.
    wake: Notify,
    /// Wakes the connection when the writer emptied the buffer.
    pub drained: Notify,
    closed: AtomicBool,
    failed: AtomicBool,
    /// The write failed because the socket took nothing for the stall timeout.
    stalled: AtomicBool,
    /// Wakes the connection when the writer failed (it may be waiting on anything else).
    pub dead: Notify,
    /// Total bytes written, read by the heartbeat logic to tell whether we were idle.
    pub written: AtomicU64,
}

impl OutBuf {
    /// Move `local` into the shared buffer (a swap when the writer is idle) and wake the writer.
    pub fn push(&self, local: &mut BytesMut) {
        if local.is_empty() {
            return;
        }
        let n = local.len();
        {
            let mut b = self.buf.lock();
            if b.is_empty() {
                std::mem::swap(&mut *b, local);
            } else {
                b.extend_from_slice(local);
                local.clear();
            }
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The writer finishes what is queued, then stops.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Did a write fail (peer gone, or not reading)?
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Did the writer give up because the peer stopped reading?
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    fn fail(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
        self.failed.store(true, Ordering::Relaxed);
        self.drained.notify_one();
        self.dead.notify_one();
    }
}

/// Write all of `buf`; fails when a single write makes no progress within `stall` (None = wait
/// for ever). Returns whether the failure was a stall.
async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut buf: &[u8],
    stall: Option<Duration>,
) -> Result<(), bool> {
    while !buf.is_empty() {
        let n = match stall {
            Some(d) => match tokio::time::timeout(d, w.write(buf)).await {
                Ok(r) => r,
                Err(_) => return Err(true),
            },
            None => w.write(buf).await,
        };
        match n {
            Ok(0) | Err(_) => return Err(false),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
        }
    }
    Ok(())
}

/// Run the writer until the buffer is closed and empty, or a write fails or stalls for `stall`.
pub async fn run<W: AsyncWrite + Unpin>(
    out: Arc<OutBuf>,
    mut w: W,
    info: Arc<crate::broker::registry::ConnectionInfo>,
    stall: Option<Duration>,
) {
    let mut spare = BytesMut::new();
    loop {
        {
            let mut b = out.buf.lock();
            std::mem::swap(&mut *b, &mut spare);
        }
        if spare.is_empty() {
            if out.closed.load(Ordering::Acquire) {
                // Re-check after seeing `closed`: a final push may have raced with it.
                if out.buf.lock().is_empty() {
                    break;
                }
                continue;
            }
            out.wake.notified().await;
            continue;
        }
        let n = spare.len();
        if let Err(stalled) = write_all(&mut w, &spare, stall).await {
            out.fail(stalled);
            // A stalled peer would block a flush or shutdown just the same.
            return;
        }
        if spare.capacity() > KEEP_CAPACITY {
            // Grown for a burst or a huge message: let it go rather than hold it for good
            // (the buffers circulate, so every oversized one passes through here).
            spare = BytesMut::new();
        } else {
            spare.clear();
        }
        out.queued.fetch_sub(n, Ordering::Relaxed);
        out.written.fetch_add(n as u64, Ordering::Relaxed);
        info.send_oct.fetch_add(n as u64, Ordering::Relaxed);
        info.send_cnt.fetch_add(1, Ordering::Relaxed);
        out.drained.notify_one();
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}
