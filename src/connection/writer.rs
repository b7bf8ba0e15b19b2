//! The connection's writer: one task per connection owns the socket's write half and writes
//! whatever the connection task has queued, as one `write_all` per wake-up, so a burst of
//! deliveries costs one syscall. Buffers are swapped, not reallocated.

use bytes::BytesMut;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Past this many queued bytes the connection stops taking deliveries until the writer catches up.
pub const HIGH_WATER: usize = 1 << 20;

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

    /// Did a write fail (peer gone)?
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Run the writer until the buffer is closed and empty, or a write fails.
pub async fn run<W: AsyncWrite + Unpin>(
    out: Arc<OutBuf>,
    mut w: W,
    info: Arc<crate::broker::registry::ConnectionInfo>,
) {
    let mut spare = BytesMut::with_capacity(64 * 1024);
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
        if w.write_all(&spare).await.is_err() {
            out.failed.store(true, Ordering::Relaxed);
            out.drained.notify_one();
            break;
        }
        spare.clear();
        out.queued.fetch_sub(n, Ordering::Relaxed);
        out.written.fetch_add(n as u64, Ordering::Relaxed);
        info.send_oct.fetch_add(n as u64, Ordering::Relaxed);
        info.send_cnt.fetch_add(1, Ordering::Relaxed);
        out.drained.notify_one();
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}
