//! Admission of connections: how many are in the handshake and how many are open, against the
//! `[limits]` `max_handshakes` and `max_connections`. Counts are atomics taken and released by
//! guards, so a connection that ends any way at all (error, panic unwinding, abort) gives its
//! place back.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connection counts shared by every connection of a broker.
#[derive(Debug, Default)]
pub struct Admission {
    handshaking: AtomicUsize,
    open: AtomicUsize,
    /// Sockets closed because too many were in the handshake, and when that was last logged
    /// (a flood must not turn into a flood of log lines).
    refused: AtomicUsize,
    last_log: parking_lot::Mutex<Option<Instant>>,
}

/// A place in the handshake; released on drop.
#[derive(Debug)]
pub struct HandshakeSlot(Arc<Admission>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.handshaking.fetch_sub(1, Relaxed);
    }
}

/// A place among the open connections; released on drop.
#[derive(Debug)]
pub struct OpenSlot(Arc<Admission>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

impl Admission {
    /// Take a handshake place, or None when `max` are taken (the caller closes the socket).
    pub fn begin_handshake(self: &Arc<Self>, max: u32) -> Option<HandshakeSlot> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if self.handshaking.fetch_add(1, Relaxed) >= max {
            self.handshaking.fetch_sub(1, Relaxed);
            self.note_refused(max);
            return None;
        }
        Some(HandshakeSlot(self.clone()))
    }

    /// Take an open-connection place, or None when `max` (non-zero) are taken.
    pub fn open(self: &Arc<Self>, max: u32) -> Option<OpenSlot> {
        let n = self.open.fetch_add(1, Relaxed);
        let slot = OpenSlot(self.clone());
        if max != 0 && n >= usize::try_from(max).unwrap_or(usize::MAX) {
            return None; // `slot` drops and gives the place back
        }
        Some(slot)
    }

    /// Connections in the handshake now.
    pub fn handshaking(&self) -> usize {
        self.handshaking.load(Relaxed)
    }

    /// Connections past the handshake now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Log refused sockets at most once per second, with how many there were.
    fn note_refused(&self, max: usize) {
        self.refused.fetch_add(1, Relaxed);
        let mut last = self.last_log.lock();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        let n = self.refused.swap(0, Relaxed);
        drop(last);
        tracing::warn!(
            "{n} connection(s) closed on accept: {max} connections are already in the handshake (limits.max_handshakes)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_places_are_bounded_and_given_back() {
        let a = Arc::new(Admission::default());
        let s1 = a.begin_handshake(2).expect("first");
        let s2 = a.begin_handshake(2).expect("second");
        assert!(a.begin_handshake(2).is_none());
        assert_eq!(a.handshaking(), 2);
        drop(s1);
        let s3 = a.begin_handshake(2).expect("a place came back");
        drop((s2, s3));
        assert_eq!(a.handshaking(), 0);
    }

    #[test]
    fn open_places_are_bounded_unless_zero() {
        let a = Arc::new(Admission::default());
        let o1 = a.open(1).expect("first");
        assert!(a.open(1).is_none());
        assert_eq!(a.open_connections(), 1);
        let many: Vec<_> = (0..100).map(|_| a.open(0).expect("unlimited")).collect();
        assert_eq!(a.open_connections(), 101);
        drop((o1, many));
        assert_eq!(a.open_connections(), 0);
    }
}
