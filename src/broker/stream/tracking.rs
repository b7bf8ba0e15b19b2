//! Server-side offset tracking for stream consumers that name themselves: the last offset each
//! name acked, kept in `tracking.json` in the stream's directory so a consumer resumes after a
//! reconnect or a restart. Written (tmp file + rename) on each ack batch; not fsynced, since a
//! lost update only means redelivering a few messages to a consumer that asked to resume.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Acked offsets by consumer name.
#[derive(Debug)]
pub struct Tracking {
    path: PathBuf,
    offsets: Mutex<BTreeMap<String, u64>>,
}

impl Tracking {
    pub fn load(dir: &std::path::Path) -> Tracking {
        let path = dir.join("tracking.json");
        let offsets = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Tracking {
            path,
            offsets: Mutex::new(offsets),
        }
    }

    /// Where `name` should resume: the offset after its last acked one.
    pub fn resume_at(&self, name: &str) -> Option<u64> {
        self.offsets.lock().get(name).map(|o| o + 1)
    }

    /// `name` acked up to `offset`.
    pub fn acked(&self, name: &str, offset: u64) {
        // The lock is held through the write so two writers never race on the tmp file.
        let mut m = self.offsets.lock();
        match m.get(name) {
            Some(&cur) if cur >= offset => return,
            _ => {
                m.insert(name.to_string(), offset);
            }
        }
        let json = serde_json::to_vec(&*m).unwrap_or_default();
        let tmp = self.path.with_extension("tmp");
        let r = std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = r {
            tracing::warn!(
                "could not save stream offsets to {}: {e}",
                self.path.display()
            );
        }
    }
}
