//! Runs the examples against a live broker, as a user would.
use crate::common;
use common::Broker;

/// target/debug/examples/<name>: built by `cargo test --all-targets`; built here when the test
/// was run on its own.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .expect("cargo build --example");
        assert!(st.success(), "building example {name} failed");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_queue_example_redelivers_a_crashed_workers_job() {
    let b = Broker::start().await;
    let out = tokio::process::Command::new(example("task_queue"))
        .env("AMQP_URL", b.url())
        .output();
    let out = common::within(60, out).await.expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every job done exactly once"), "{stdout}");
    assert!(stdout.contains("crashed while working"), "{stdout}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_example_projections_agree() {
    let b = Broker::start().await;
    let out = tokio::process::Command::new(example("ledger"))
        .env("AMQP_URL", b.url())
        .output();
    let out = common::within(60, out).await.expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "projector: balances after replaying 300 events from first",
        "live: balances after tailing to offset 499",
        "time travel: balances as of",
        "statement (x-stream-filter=bob)",
        "ok: projector, live view, time travel and statement agree",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    common::within(10, b.stop()).await;
}
