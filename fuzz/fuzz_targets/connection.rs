//! Stateful: a real connection (`warren::connection::serve`) over an in-memory duplex stream
//! against a fresh broker (data dir on tmpfs), fed a valid handshake and then the fuzz input as
//! frames (see `warren_fuzz::wire`). The broker must never panic, and once the client has sent
//! everything and closed its side the connection must end within a time budget (no hang),
//! while the client reads whatever the broker sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::auth::Users;
use warren::broker::Broker;
use warren::Config;

/// How long a connection may take to end after the client's last byte.
const BUDGET: Duration = Duration::from_secs(10);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::Builder::new()
        .prefix("warren-fuzz-")
        .tempdir_in(scratch())
        .expect("temp dir");
    let mut cfg = Config::for_tests(dir.path());
    cfg.log_level = "off".into();
    // Small limits reach the limit paths with small inputs.
    cfg.limits.max_message_size = 64 * 1024;
    cfg.store.queue_memory_limit = 64 * 1024;
    cfg.store.segment_size = 64 * 1024;
    let users = Users::from_config(&cfg).expect("users");
    let broker = Arc::new(Broker::open(cfg, users).expect("broker"));
    let mut input = warren_fuzz::handshake();
    input.extend_from_slice(&warren_fuzz::wire(data));

    let b = broker.clone();
    runtime().block_on(async move {
        let broker = b;
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let peer = "127.0.0.1:40000".parse().expect("addr");
        let local = "127.0.0.1:5672".parse().expect("addr");
        let conn = tokio::spawn(warren::connection::serve(
            server,
            peer,
            local,
            broker.clone(),
            shutdown_rx,
        ));
        let (mut rd, mut wr) = tokio::io::split(client);
        // The client reads everything (a client that does not read is a test of its own).
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        // The broker may close mid-input: write errors just end the input.
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
        match tokio::time::timeout(BUDGET, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("connection task failed: {e}"),
            Err(_) => panic!("connection did not end within {BUDGET:?} of the client's EOF"),
        }
        drop(wr);
        let _ = tokio::time::timeout(BUDGET, reader).await;
    });
    drop(broker);
    // The broker's group-commit thread ends once every handle to the store is gone. Wait for it:
    // a broker kept alive by a task that outlived its connection is a leak (and a thread still
    // exiting would otherwise show up as one in LeakSanitizer's check after this input).
    let deadline = std::time::Instant::now() + BUDGET;
    while commit_threads() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker's commit thread still runs {BUDGET:?} after its last connection ended"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
});

/// Threads of this process named `warren-commit`.
fn commit_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "warren-commit")
        })
        .count()
}
