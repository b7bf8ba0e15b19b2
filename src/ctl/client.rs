//! The HTTP client `warren ctl` uses: blocking ureq (HTTPS with a given CA), basic auth, JSON
//! in and out.

use base64::Engine as _;
use serde_json::Value;

/// A management API endpoint and the credentials to use it.
pub struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// A failed call, ready to print.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{method} {path}: HTTP {status}: {reason}")]
    Api {
        method: String,
        path: String,
        status: u16,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// Percent-encode one path segment (a vhost `/` is `%2F`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for `url`; an `https://` URL needs `cacert`, the PEM file of the CA that signed
    /// the broker's certificate (the only root trusted).
    pub fn new(
        url: &str,
        user: &str,
        password: &str,
        cacert: Option<&std::path::Path>,
    ) -> Result<Client, CtlError> {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)));
        if url.starts_with("https://") {
            let Some(path) = cacert else {
                return Err(CtlError::Usage(
                    "an https:// URL needs --cacert FILE (the CA that signed the broker's certificate)"
                        .into(),
                ));
            };
            let pem = std::fs::read(path)
                .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", path.display())))?;
            let mut roots = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    roots.push(c);
                }
            }
            if roots.is_empty() {
                return Err(CtlError::Usage(format!(
                    "{}: no certificate found",
                    path.display()
                )));
            }
            let tls = ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build();
            config = config.tls_config(tls);
        }
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            auth: format!("Basic {token}"),
            agent: config.build().into(),
        })
    }

    /// One request; `Ok(None)` for an empty answer (204).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Option<Value>, CtlError> {
        let url = format!("{}{}", self.base, path);
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", &self.auth);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .map_err(|e| CtlError::Usage(format!("bad request for {url}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| CtlError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            let reason = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
                .unwrap_or(text);
            return Err(CtlError::Api {
                method: method.into(),
                path: path.into(),
                status,
                reason,
            });
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CtlError::Usage(format!("{path}: the answer is not JSON: {e}")))
    }

    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        Ok(self.call("GET", path, None, &[])?.unwrap_or(Value::Null))
    }
}
