//! HTTP basic authentication against warren's users, and what their tags allow, as RabbitMQ's
//! management plugin has it: a user needs one of the management tags to use the API at all
//! (else 401 "Not management user"); `management` and `policymaker` users see and change only
//! the vhosts they have permissions in, and only their own connections; `monitoring` users see
//! everything and otherwise are management users (RabbitMQ's tags nest: monitoring includes
//! management); `administrator` users do anything.

use super::error::{ApiError, ApiResult};
use crate::auth::User;
use crate::broker::Broker;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use std::sync::Arc;

/// The authenticated user of a request.
pub struct Auth {
    pub user: Arc<User>,
    pub(super) broker: Arc<Broker>,
}

const MANAGEMENT_TAGS: &[&str] = &["administrator", "monitoring", "policymaker", "management"];

impl Auth {
    pub fn is_admin(&self) -> bool {
        self.user.has_tag("administrator")
    }

    /// Sees every vhost and connection.
    pub fn sees_all(&self) -> bool {
        self.is_admin() || self.user.has_tag("monitoring")
    }

    /// Administrator only (users, permissions, vhosts, definitions).
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("Not administrator user"))
        }
    }

    /// May this user see `vhost`?
    pub fn can_see(&self, vhost: &str) -> bool {
        self.sees_all() || self.broker.can_access(&self.user, vhost)
    }

    /// Reading something in `vhost`: 404 when the vhost does not exist, 403 when not allowed.
    pub fn read_vhost(&self, vhost: &str) -> ApiResult<Arc<crate::broker::vhost::VHost>> {
        let v = self.broker.vhost(vhost).ok_or_else(ApiError::not_found)?;
        if !self.can_see(vhost) {
            return Err(vhost_refused());
        }
        Ok(v)
    }

    /// RabbitMQ's resource permission for an operation through the API (403 with the AMQP
    /// refusal's text). Administrators pass: they may change any permission anyway.
    pub fn authorize(
        &self,
        vhost: &str,
        perm: crate::broker::permissions::Perm,
        kind: crate::broker::permissions::Kind,
        name: &str,
    ) -> ApiResult<()> {
        if self.is_admin() {
            return Ok(());
        }
        crate::broker::permissions::check_once(
            &self.broker,
            &self.user.name,
            vhost,
            perm,
            kind,
            name,
        )
        .map_err(ApiError::from)
    }

    /// [`Auth::authorize`] as `POST .../get` answers a refusal: RabbitMQ's management plugin
    /// runs it over a channel and passes the channel's close text on (401).
    pub fn authorize_get(&self, vhost: &str, name: &str) -> ApiResult<()> {
        use crate::broker::permissions::{check_once, Kind, Perm};
        if self.is_admin() {
            return Ok(());
        }
        check_once(
            &self.broker,
            &self.user.name,
            vhost,
            Perm::Read,
            Kind::Queue,
            name,
        )
        .map_err(|e| ApiError::unauthorized(e.text))
    }

    /// Topic authorisation of a publish to a topic exchange through the API: 400 with the
    /// close's code and text, as [`Auth::authorize_publish`].
    pub fn authorize_topic_publish(&self, vhost: &str, exchange: &str, key: &str) -> ApiResult<()> {
        use crate::broker::permissions::Perm;
        use crate::broker::topic_permissions::{refusal, CompiledTopics};
        if self.is_admin() {
            return Ok(());
        }
        let name = &self.user.name;
        let topics = CompiledTopics::new(
            self.broker.access.topic_permissions_of(name, vhost),
            name,
            vhost,
        );
        match topics {
            Some(t) if !t.allows(Perm::Write, exchange, key) => {
                let e = refusal(Perm::Write, exchange, key, vhost, name);
                Err(ApiError::bad_request(format!("{} {}", e.code, e.text)))
            }
            _ => Ok(()),
        }
    }

    /// [`Auth::authorize`] as `POST .../publish` answers a refusal: 400 with the code and text
    /// of the channel close ("403 ACCESS_REFUSED - write access to exchange ...").
    pub fn authorize_publish(&self, vhost: &str, exchange: &str) -> ApiResult<()> {
        use crate::broker::permissions::{Kind, Perm};
        if self.is_admin() {
            return Ok(());
        }
        crate::broker::permissions::check_once(
            &self.broker,
            &self.user.name,
            vhost,
            Perm::Write,
            Kind::Exchange,
            exchange,
        )
        .map_err(|e| ApiError::bad_request(format!("{} {}", e.code, e.text)))
    }

    /// Changing something in `vhost`.
    pub fn write_vhost(&self, vhost: &str) -> ApiResult<Arc<crate::broker::vhost::VHost>> {
        let v = self.broker.vhost(vhost).ok_or_else(ApiError::not_found)?;
        if !self.is_admin() && !self.broker.can_access(&self.user, vhost) {
            return Err(vhost_refused());
        }
        Ok(v)
    }

    /// May this user see (or close) a connection of `owner` in `vhost`?
    pub fn can_see_connection(&self, owner: &str, vhost: &str) -> bool {
        self.sees_all() || (owner == self.user.name && self.can_see(vhost))
    }

    /// Closing someone's connection: their own for management users, any for administrators.
    pub fn may_close_connection(&self, owner: &str) -> bool {
        self.is_admin() || owner == self.user.name
    }
}

/// RabbitMQ's answer to a user without permissions in the vhost, reading or writing.
fn vhost_refused() -> ApiError {
    ApiError::unauthorized("User not authorised to access virtual host")
}

/// `Authorization: Basic base64(user:password)`.
fn credentials(parts: &Parts) -> Option<Result<(String, String), ()>> {
    let h = parts.headers.get(header::AUTHORIZATION)?;
    let parse = || -> Option<(String, String)> {
        let v = h.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    };
    Some(parse().ok_or(()))
}

/// Check the request's credentials and tags.
pub fn authenticate(broker: &Arc<Broker>, parts: &Parts) -> ApiResult<Auth> {
    let (name, password) = match credentials(parts) {
        None => {
            let mut e = ApiError::unauthorized("Not_Authorized");
            e.challenge = true;
            return Err(e);
        }
        Some(Err(())) => return Err(ApiError::unauthorized("malformed Authorization header")),
        Some(Ok(c)) => c,
    };
    let Some(user) = broker.users.authenticate(&name, password.as_bytes()) else {
        return Err(ApiError::unauthorized("Login failed"));
    };
    // As for AMQP (and RabbitMQ's loopback_users): guest only from this machine.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if user.name == crate::auth::DEFAULT_USER
        && broker.config.guest_loopback_only
        && peer.is_some_and(|ip| !ip.is_loopback())
    {
        return Err(ApiError::unauthorized(
            "user 'guest' can only connect via localhost",
        ));
    }
    if !MANAGEMENT_TAGS.iter().any(|t| user.has_tag(t)) {
        return Err(ApiError::unauthorized("Not management user"));
    }
    Ok(Auth {
        user,
        broker: broker.clone(),
    })
}

impl FromRequestParts<Arc<Broker>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Broker>) -> ApiResult<Auth> {
        authenticate(state, parts)
    }
}
