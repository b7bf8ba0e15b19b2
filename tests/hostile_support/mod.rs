//! Shared by the hostile_* tests: a well-behaved client that measures how fast the broker answers
//! it while an attack runs.
#![allow(dead_code)]

use crate::common::{declare, get_body, publish, within, Broker};
use lapin::{Channel, Connection};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What "normal latency" means here: a publish + get round trip (or a new connection with one)
/// must finish within this, on a loaded 2-core machine, while an attack runs.
pub const NORMAL: Duration = Duration::from_secs(2);

/// A connection opened before the attack, with its own queue.
pub struct Probe {
    _conn: Connection,
    ch: Channel,
    queue: String,
}

impl Probe {
    pub async fn new(b: &Broker) -> Probe {
        let (conn, ch) = within(10, b.channel()).await;
        let q = declare(&ch, "").await;
        Probe {
            _conn: conn,
            ch,
            queue: q.name().as_str().to_string(),
        }
    }

    /// One publish + get round trip; fails the test past [`NORMAL`].
    pub async fn round_trip(&self) -> Duration {
        let t = Instant::now();
        let got = tokio::time::timeout(NORMAL, async {
            publish(&self.ch, &self.queue, b"ping").await;
            get_body(&self.ch, &self.queue).await
        })
        .await
        .unwrap_or_else(|_| panic!("round trip took longer than {NORMAL:?} during the attack"));
        assert_eq!(got.as_deref(), Some(&b"ping"[..]));
        t.elapsed()
    }
}

/// A brand-new client: connect, declare, publish, get, within [`NORMAL`].
pub async fn fresh_client_round_trip(b: &Broker) -> Duration {
    let t = Instant::now();
    tokio::time::timeout(NORMAL, async {
        let (_c, ch) = b.channel().await;
        let q = declare(&ch, "").await;
        let name = q.name().as_str().to_string();
        publish(&ch, &name, b"hello").await;
        assert_eq!(get_body(&ch, &name).await.as_deref(), Some(&b"hello"[..]));
    })
    .await
    .unwrap_or_else(|_| panic!("a new client took longer than {NORMAL:?} during the attack"));
    t.elapsed()
}

/// Round trips on `probe` every 100 ms until stopped; yields the slowest one and how many ran.
pub struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Duration, usize)>,
}

impl Prober {
    pub fn start(probe: Probe) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let (mut worst, mut n) = (Duration::ZERO, 0);
            while !s.load(Ordering::Relaxed) {
                worst = worst.max(probe.round_trip().await);
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (worst, n)
        });
        Prober { stop, task }
    }

    /// Stop and return (slowest round trip, round trips done); at least one must have run.
    pub async fn finish(self) -> (Duration, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let (worst, n) = self.task.await.expect("prober panicked");
        assert!(n > 0, "no round trip ran during the attack");
        (worst, n)
    }
}
