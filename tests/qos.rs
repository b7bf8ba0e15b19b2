//! basic.qos: per-consumer prefetch for new consumers; `global` also applies to running ones.
use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;

#[tokio::test]
async fn global_qos_raises_the_prefetch_of_a_running_consumer() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "eta").await;
    for i in 0..10u8 {
        publish(&ch, "eta", &[i]).await;
    }
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut c = ch
        .basic_consume(
            "eta".into(),
            "w".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let _first = within(5, c.next()).await.expect("delivery").expect("ok");
    // Prefetch 1 and nothing acked: no second delivery.
    assert!(tokio::time::timeout(Duration::from_millis(200), c.next())
        .await
        .is_err());
    ch.basic_qos(4, BasicQosOptions { global: true })
        .await
        .expect("global qos");
    for _ in 0..3 {
        within(5, c.next()).await.expect("delivery").expect("ok");
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), c.next())
        .await
        .is_err());
    b.stop().await;
}

#[tokio::test]
async fn non_global_qos_applies_to_new_consumers_only() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "q").await;
    for i in 0..10u8 {
        publish(&ch, "q", &[i]).await;
    }
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut c = ch
        .basic_consume(
            "q".into(),
            "a".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    within(5, c.next()).await.expect("delivery").expect("ok");
    ch.basic_qos(5, BasicQosOptions::default())
        .await
        .expect("qos");
    assert!(tokio::time::timeout(Duration::from_millis(200), c.next())
        .await
        .is_err());
    b.stop().await;
}
