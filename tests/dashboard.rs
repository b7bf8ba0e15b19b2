//! The dashboard at `/`, loaded in headless Chromium (Debian's `chromium`, installed by
//! tests/browser/install.sh from ./test.sh) against a live broker with real AMQP traffic: the
//! DOM it renders shows the queues with their message counts, the stream, the connection and
//! the totals. Skips, saying so, only when no chromium is installed.

use crate::common;

use common::http::eventually;
use common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser"].into_iter().find_map(|c| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
}

/// The page's DOM after `budget_ms` of virtual time.
async fn dump_dom(browser: &str, url: &str, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("--virtual-time-budget={budget_ms}"))
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished in time")
    .expect("chromium ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr>` of table `table` whose data-name is `name`.
fn row<'a>(dom: &'a str, table: &str, name: &str) -> Option<&'a str> {
    let t = dom.find(&format!("<table id=\"{table}\""))?;
    let rest = &dom[t..];
    let end = rest.find("</table>")?;
    let rest = &rest[..end];
    let r = rest.find(&format!("data-name=\"{name}\""))?;
    let tr = &rest[r..];
    Some(&tr[..tr.find("</tr>")?])
}

#[tokio::test]
async fn the_dashboard_shows_queues_streams_and_connections() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED the_dashboard_shows_queues_streams_and_connections: chromium is not \
             installed and tests/browser/install.sh could not install it"
        );
        return;
    };
    let b = Broker::start_with(|c| c.http.collect_statistics_interval = 200).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "dash-q").await;
    for _ in 0..3 {
        publish(&ch, "dash-q", b"x").await;
    }
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    ch.queue_declare(
        "dash-stream".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    for _ in 0..5 {
        publish(&ch, "dash-stream", b"s").await;
    }
    let http = b.http();
    let conn_name = eventually(5, || {
        let http = http.clone();
        async move {
            let q = http.get("/api/queues/%2F/dash-q").await.json();
            let s = http.get("/api/queues/%2F/dash-stream").await.json();
            let c = http.get("/api/connections").await.json();
            (q["messages"] == 3 && s["messages"] == 5)
                .then(|| c[0]["name"].as_str().unwrap().to_string())
        }
    })
    .await;

    let url = format!("http://{}/#user=guest&password=guest", b.http_addr());
    let dom = dump_dom(&browser, &url, 5000).await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page did not load its data:\n{dom}"
    );
    let q = row(&dom, "queues", "dash-q").unwrap_or_else(|| panic!("no dash-q row:\n{dom}"));
    assert!(q.contains("data-key=\"messages\">3<"), "{q}");
    assert!(q.contains("data-key=\"ready\">3<"), "{q}");
    let s = row(&dom, "streams", "dash-stream").unwrap_or_else(|| panic!("no stream row:\n{dom}"));
    assert!(s.contains("data-key=\"messages\">5<"), "{s}");
    let escaped = conn_name.replace('>', "&gt;");
    assert!(
        row(&dom, "connections", &escaped).is_some(),
        "connection {conn_name} not shown:\n{dom}"
    );
    assert!(dom.contains("id=\"total-queues\""));
    assert!(dom.contains("<polyline"), "rate charts are drawn");

    // Without credentials the page asks for them instead.
    let dom = dump_dom(&browser, &format!("http://{}/", b.http_addr()), 2000).await;
    assert!(dom.contains("id=\"login-form\""));
    assert!(!dom.contains("data-loaded=\"true\""));
    // Wrong credentials: back to the login form with an error.
    let dom = dump_dom(
        &browser,
        &format!("http://{}/#user=guest&password=nope", b.http_addr()),
        3000,
    )
    .await;
    assert!(dom.contains("login failed"), "{dom}");
}
