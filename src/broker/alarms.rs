//! Resource alarms, as RabbitMQ has them: the memory high watermark (resident memory of the
//! process) and the disk free limit (free space on the data dir's file system). A background task
//! checks both; while either is on, connections that publish are blocked (they get
//! `connection.blocked` and are no longer read) until every alarm clears. Connections learn of
//! changes through a `watch` channel, so an idle connection costs nothing.

use crate::config::AlarmsConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Bit of the memory alarm in [`Alarms::active`].
pub const MEMORY: u8 = 1;
/// Bit of the disk alarm.
pub const DISK: u8 = 2;

/// The `connection.blocked` reason for a set of alarms (RabbitMQ's wording).
pub fn reason(mask: u8) -> &'static str {
    match (mask & MEMORY != 0, mask & DISK != 0) {
        (true, true) => "low on memory and disk",
        (true, false) => "low on memory",
        _ => "low on disk",
    }
}

/// The alarm state shared by the monitor, the connections and the HTTP layer.
#[derive(Debug)]
pub struct Alarms {
    active: AtomicU8,
    tx: watch::Sender<u8>,
    mem_limit: AtomicU64,
    disk_limit: AtomicU64,
    mem_used: AtomicU64,
    disk_free: AtomicU64,
    total_ram: u64,
    data_dir: PathBuf,
}

impl Alarms {
    /// Limits from the config, checked once right away so the state is known before the first
    /// client connects.
    pub fn new(cfg: &AlarmsConfig, data_dir: &Path) -> Alarms {
        let total_ram = total_ram();
        let (tx, _) = watch::channel(0);
        let a = Alarms {
            active: AtomicU8::new(0),
            tx,
            mem_limit: AtomicU64::new(cfg.memory_high_watermark.resolve(total_ram).unwrap_or(0)),
            disk_limit: AtomicU64::new(cfg.disk_free_limit.resolve(total_ram).unwrap_or(0)),
            mem_used: AtomicU64::new(0),
            disk_free: AtomicU64::new(u64::MAX),
            total_ram,
            data_dir: data_dir.to_path_buf(),
        };
        a.check();
        a
    }

    /// The alarms on now (a mask of [`MEMORY`] and [`DISK`]); one relaxed load.
    #[inline]
    pub fn active(&self) -> u8 {
        self.active.load(Relaxed)
    }

    /// Follow alarm changes.
    pub fn subscribe(&self) -> watch::Receiver<u8> {
        self.tx.subscribe()
    }

    pub fn mem_used(&self) -> u64 {
        self.mem_used.load(Relaxed)
    }

    pub fn mem_limit(&self) -> u64 {
        self.mem_limit.load(Relaxed)
    }

    pub fn disk_free(&self) -> u64 {
        self.disk_free.load(Relaxed)
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk_limit.load(Relaxed)
    }

    pub fn total_ram(&self) -> u64 {
        self.total_ram
    }

    /// Change the memory high watermark (bytes) and re-check now (RabbitMQ's
    /// `set_vm_memory_high_watermark`; tests use it to raise and clear the alarm).
    pub fn set_memory_limit(&self, bytes: u64) {
        self.mem_limit.store(bytes, Relaxed);
        self.check();
    }

    /// Change the disk free limit (bytes) and re-check now.
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_limit.store(bytes, Relaxed);
        self.check();
    }

    /// Measure memory and disk, and raise or clear the alarms.
    pub fn check(&self) {
        let mut mask = 0;
        if let Some(rss) = resident_memory() {
            self.mem_used.store(rss, Relaxed);
            if rss > self.mem_limit() {
                mask |= MEMORY;
            }
        }
        match disk_free(&self.data_dir) {
            Some(free) => {
                self.disk_free.store(free, Relaxed);
                if free < self.disk_free_limit() {
                    mask |= DISK;
                }
            }
            // Unknown free space (e.g. the data dir is gone): keep the last verdict.
            None => mask |= self.active() & DISK,
        }
        let old = self.active.swap(mask, Relaxed);
        if old != mask {
            for (bit, what) in [(MEMORY, "memory"), (DISK, "disk")] {
                match (old & bit != 0, mask & bit != 0) {
                    (false, true) => tracing::warn!(
                        mem_used = self.mem_used(),
                        mem_limit = self.mem_limit(),
                        disk_free = self.disk_free(),
                        disk_free_limit = self.disk_free_limit(),
                        "{what} resource alarm set: publishers will be blocked"
                    ),
                    (true, false) => tracing::info!("{what} resource alarm cleared"),
                    _ => {}
                }
            }
            self.tx.send_replace(mask);
        }
    }

    /// Check every `interval` until the broker is dropped.
    pub fn spawn_monitor(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(a) = weak.upgrade() else { return };
                a.check();
            }
        });
    }
}

/// Resident set size of this process: the second field of /proc/self/statm, in pages.
pub fn resident_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Physical memory of the machine (MemTotal of /proc/meminfo); 0 when unknown.
pub fn total_ram() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes available to an unprivileged user on the file system holding `dir`.
pub fn disk_free(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SizeSetting;

    #[test]
    fn measures_this_process_and_this_disk() {
        assert!(resident_memory().is_some_and(|r| r > 0));
        assert!(total_ram() > 0);
        assert!(disk_free(Path::new(".")).is_some());
    }

    #[test]
    fn alarms_follow_their_limits() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AlarmsConfig {
            memory_high_watermark: SizeSetting::Bytes(1),
            disk_free_limit: SizeSetting::Bytes(0),
            check_interval: 1000,
        };
        let a = Alarms::new(&cfg, dir.path());
        let mut rx = a.subscribe();
        assert_eq!(a.active(), MEMORY);
        a.set_memory_limit(u64::MAX);
        assert_eq!(a.active(), 0);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 0);
        a.set_disk_free_limit(u64::MAX);
        assert_eq!(a.active(), DISK);
        assert_eq!(reason(a.active()), "low on disk");
        assert_eq!(reason(MEMORY | DISK), "low on memory and disk");
    }
}
