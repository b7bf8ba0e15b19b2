//! Publisher flow control for classic queues: when consumers are attached but the ready backlog
//! passes a high-water mark, the connections publishing into the queue stop reading their sockets
//! until consumers bring it back under a low-water mark.
//!
//! Why: publishing into warren costs less than delivering, so a flat-out publisher outruns its
//! consumers, the backlog (and the broker's memory) grows without bound, and the consumers get
//! less CPU. RabbitMQ's credit flow has the same effect. A backlog with no consumer is an intended
//! buffer (work queued for later), so it never throttles; nor does a backlog whose consumers have
//! stopped taking messages (a stuck consumer must not stall every publisher) — that is detected
//! as no delivery during a whole wait period, and lasts until the queue delivers again.

use super::Queue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::Notify;

/// Ready messages (in memory or paged) above which publishers wait.
pub const HIGH_WATER: usize = 10_000;
/// Publishers resume once the backlog is down to this.
pub const LOW_WATER: usize = HIGH_WATER / 2;
/// Ready bytes above which publishers wait (large messages reach it before the count).
pub const HIGH_WATER_BYTES: u64 = 256 << 20;
/// A wait with no delivery at all for this long means the consumers are stuck.
const STALL: Duration = Duration::from_millis(250);

/// The queue's side of flow control: lock-free reads for publishers.
#[derive(Debug)]
pub struct Flow {
    /// Set (under the queue lock) when the backlog passed the high-water mark with consumers.
    congested: AtomicBool,
    /// Messages taken from the queue while congested: the consumers' progress during a wait.
    taken: AtomicU64,
    /// The consumers were found stuck; no throttling until the queue delivers again.
    stalled: AtomicBool,
    released: Notify,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            congested: AtomicBool::new(false),
            taken: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            released: Notify::new(),
        }
    }
}

impl Flow {
    /// Should a publisher that just published here wait? One relaxed load.
    #[inline]
    pub fn is_congested(&self) -> bool {
        self.congested.load(Relaxed)
    }

    /// Called under the queue lock after an enqueue.
    pub(super) fn check_high(&self, backlog: usize, bytes: u64, consumers: usize) {
        if consumers == 0 || self.is_congested() {
            return;
        }
        if (backlog > HIGH_WATER || bytes > HIGH_WATER_BYTES) && !self.stalled.load(Relaxed) {
            self.congested.store(true, Relaxed);
        }
    }

    /// Called under the queue lock after `n` messages left (or the consumers or the queue went).
    pub(super) fn check_low(&self, n: u64, backlog: usize, bytes: u64, consumers: usize) {
        // Plain loads on the common path: nothing is written unless flow control is active.
        if n > 0 && self.stalled.load(Relaxed) {
            self.stalled.store(false, Relaxed);
        }
        if !self.is_congested() {
            return;
        }
        if n > 0 {
            self.taken.fetch_add(n, Relaxed);
        }
        if consumers == 0 || (backlog <= LOW_WATER && bytes <= HIGH_WATER_BYTES / 2) {
            self.release();
        }
    }

    pub(super) fn release(&self) {
        self.congested.store(false, Relaxed);
        self.released.notify_waiters();
    }
}

impl Queue {
    /// Wait until publishers may go on into this queue: the backlog fell under the low-water
    /// mark, or the consumers stopped taking messages.
    pub async fn flow_wait(&self) {
        loop {
            let released = self.flow.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.flow.is_congested() || self.is_deleted() {
                return;
            }
            let before = self.flow.taken.load(Relaxed);
            if tokio::time::timeout(STALL, released).await.is_err() {
                let now = self.flow.taken.load(Relaxed);
                if now == before {
                    self.flow.stalled.store(true, Relaxed);
                    self.flow.release();
                    return;
                }
            }
        }
    }
}
