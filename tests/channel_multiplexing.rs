//! Channels multiplexed on one connection: concurrent multi-frame publishes on many channels and
//! content frames interleaved across channels (raw frames, which lapin never sends) stay
//! separate, delivery tags count per channel, and channel.flow(active) is acknowledged.
use crate::common;
use common::queues::*;
use common::*;

use lapin::options::*;

fn pattern(chan: usize, msg: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(7) ^ chan.wrapping_mul(31) ^ msg.wrapping_mul(131)) as u8)
        .collect()
}

#[tokio::test]
async fn concurrent_multi_frame_publishes_on_many_channels_do_not_mix() {
    let b = Broker::start().await;
    let c = b.connect().await;
    const CHANNELS: usize = 8;
    const MSGS: usize = 4;
    const LEN: usize = 300_000; // three frames at frame_max 131072
    let mut tasks = Vec::new();
    for n in 0..CHANNELS {
        let ch = c.create_channel().await.expect("channel");
        let q = format!("mix{n}");
        declare(&ch, &q).await;
        tasks.push(tokio::spawn(async move {
            for m in 0..MSGS {
                publish(&ch, &q, &pattern(n, m, LEN + n)).await;
            }
            ch
        }));
    }
    let mut chans = Vec::new();
    for t in tasks {
        chans.push(within(30, t).await.expect("publisher task"));
    }
    // Consume all queues concurrently too: deliveries interleave on the way out.
    let mut readers = Vec::new();
    for (n, ch) in chans.into_iter().enumerate() {
        readers.push(tokio::spawn(async move {
            let mut consumer = consume(&ch, &format!("mix{n}"), true).await;
            for m in 0..MSGS {
                let d = next(&mut consumer).await;
                assert!(
                    d.data == pattern(n, m, LEN + n),
                    "channel {n} message {m} corrupted"
                );
            }
        }));
    }
    for r in readers {
        within(30, r).await.expect("reader task");
    }
    b.stop().await;
}

#[tokio::test]
async fn interleaved_content_frames_across_channels_stay_separate() {
    // Raw frames: two channels' publishes interleaved frame by frame, which lapin never does.
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "il1").await;
    declare(&ch, "il2").await;
    let mut raw = raw::Client::open(&b).await;
    raw.open_channel(2).await;
    let one = pattern(1, 0, 10_000);
    let two = pattern(2, 0, 10_000);
    raw.interleaved_publish(&[(1, "il1", &one), (2, "il2", &two)], 4096)
        .await;
    raw.sync(1).await;
    raw.sync(2).await;
    assert!(within(5, get_body(&ch, "il1")).await == Some(one));
    assert!(within(5, get_body(&ch, "il2")).await == Some(two));
    drop(raw);
    b.stop().await;
}

#[tokio::test]
async fn delivery_tags_start_at_one_per_channel_and_increase_by_one() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch1 = c.create_channel().await.expect("channel");
    let ch2 = c.create_channel().await.expect("channel");
    declare(&ch1, "t1").await;
    declare(&ch1, "t2").await;
    publish_n(&ch1, "t1", 3).await;
    publish_n(&ch1, "t2", 3).await;
    // basic.get and basic.deliver share the channel's sequence.
    let (_, _, tag, _) = get_manual(&ch1, "t1").await.expect("get");
    assert_eq!(tag, 1);
    let mut c1 = consume(&ch1, "t1", false).await;
    let mut c2 = consume(&ch2, "t2", false).await;
    assert_eq!(next(&mut c1).await.delivery_tag, 2);
    assert_eq!(next(&mut c1).await.delivery_tag, 3);
    for want in 1..=3 {
        assert_eq!(next(&mut c2).await.delivery_tag, want);
    }
    b.stop().await;
}

#[tokio::test]
async fn channel_flow_active_is_acknowledged() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let active = within(5, ch.channel_flow(ChannelFlowOptions { active: true }))
        .await
        .expect("channel.flow");
    assert!(active);
    declare(&ch, "after_flow").await;
    b.stop().await;
}
