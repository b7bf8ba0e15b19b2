//! A small HTTP client for the management API tests: ureq (blocking) run on tokio's blocking
//! pool, basic auth, every status returned as is (never turned into an error).

use serde_json::Value;
use std::net::SocketAddr;

/// A response: status, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not JSON: a test failure).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one broker's HTTP port, as one user.
#[derive(Debug, Clone)]
pub struct Http {
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl Http {
    pub fn new(addr: SocketAddr, user: &str, password: &str) -> Http {
        Http {
            base: format!("http://{addr}"),
            auth: Some((user.into(), password.into())),
        }
    }

    /// The same broker as another user.
    pub fn as_user(&self, user: &str, password: &str) -> Http {
        Http {
            base: self.base.clone(),
            auth: Some((user.into(), password.into())),
        }
    }

    /// The same broker without credentials.
    pub fn anonymous(&self) -> Http {
        Http {
            base: self.base.clone(),
            auth: None,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None, &[]).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request("PUT", path, Some(body.to_string()), &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(body.to_string()), &[])
            .await
    }

    /// Any request; `body` is sent as JSON.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = format!("{}{}", self.base, path);
        let method = method.to_string();
        let auth = self.auth.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || blocking(&method, &url, auth, body, headers))
            .await
            .expect("http request task")
    }
}

fn blocking(
    method: &str,
    url: &str,
    auth: Option<(String, String)>,
    body: Option<String>,
    headers: Vec<(String, String)>,
) -> Reply {
    use base64::Engine as _;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some((u, p)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req = req.header("authorization", format!("Basic {token}"));
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(body.unwrap_or_default()).expect("request");
    let mut resp = agent
        .run(req)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// Poll `f` until it returns Some, for up to `secs` seconds (rates need a few samples).
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
