//! Disk full: confirming publishers get basic.nack, consumers go on, nothing confirmed is lost,
//! and publishing works again once space returns. Needs root to mount a small tmpfs; skipped
//! (with a message) where mounting is not allowed.
use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use lapin::Confirmation;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted under a temp dir, unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(SmallDisk { _dir: dir, mnt })
    }

    fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn body(i: u32) -> Vec<u8> {
    let mut b = i.to_be_bytes().to_vec();
    b.resize(8 * 1024, b'd');
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_nacks_publishers_keeps_consumers_and_recovers() {
    let Some(disk) = SmallDisk::mount("3m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let b = Broker::start_in(disk.path(), |c| {
        c.store.segment_size = 256 * 1024;
    })
    .await;
    let (_c, ch) = b.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("full".into(), durable, FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let props = BasicProperties::default().with_delivery_mode(2);

    // Fill the disk: publish until the broker nacks.
    let mut acked: HashSet<u32> = HashSet::new();
    let mut nacked = 0;
    for i in 0..2000u32 {
        let c = ch
            .basic_publish(
                "".into(),
                "full".into(),
                BasicPublishOptions::default(),
                &body(i),
                props.clone(),
            )
            .await
            .expect("publish");
        match within(10, c).await.expect("confirmation") {
            Confirmation::Ack(_) => {
                acked.insert(i);
            }
            Confirmation::Nack(_) => {
                nacked += 1;
                if nacked >= 5 {
                    break;
                }
            }
            Confirmation::NotRequested => panic!("confirms were requested"),
        }
    }
    assert!(nacked > 0, "a 3 MiB disk must fill with 8 KiB messages");
    assert!(!acked.is_empty());

    // Consumers go on: drain everything, acking; every confirmed message is there.
    let (_c2, cons) = b.channel().await;
    cons.basic_qos(50, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut stream = cons
        .basic_consume(
            "full".into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut seen: HashSet<u32> = HashSet::new();
    while !acked.is_subset(&seen) {
        let d = within(10, stream.next())
            .await
            .expect("delivery")
            .expect("ok");
        seen.insert(u32::from_be_bytes([
            d.data[0], d.data[1], d.data[2], d.data[3],
        ]));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }

    // Space came back (acked segments were deleted): publishing is confirmed again.
    let mut recovered = false;
    for i in 0..50u32 {
        let c = ch
            .basic_publish(
                "".into(),
                "full".into(),
                BasicPublishOptions::default(),
                &body(100_000 + i),
                props.clone(),
            )
            .await
            .expect("publish");
        if matches!(
            within(10, c).await.expect("confirmation"),
            Confirmation::Ack(_)
        ) {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "publishing must recover once space returns");
    b.stop().await;
}
