//! The HTTP layer: RabbitMQ's management API (`/api/...`), Prometheus metrics (`/metrics`) and
//! a live dashboard (`/`), served with axum. It is a peer of `connection`: it calls `broker`
//! (snapshots, counters, topology operations, the registry of live connections) and never
//! touches an AMQP connection's socket; closing a connection goes through the registry.
//!
//! Files by resource: `overview` (overview, nodes, health), `connections` (connections,
//! channels, consumers), `exchanges`, `queues`, `bindings`, `admin` (vhosts, users,
//! permissions), `limits` (vhost and user limits), `policies`, `definitions`, `metrics`,
//! `dashboard`; `auth`, `error` and `json` are shared. RabbitMQ compatibility: `query` (the
//! query parameters of any GET, one middleware), `shape` (Erlang-runtime fields and churn),
//! `compat` (endpoints of features warren answers as unused), `metrics_rabbit`.

mod admin;
mod auth;
mod bindings;
mod compat;
mod connections;
mod dashboard;
mod definitions;
mod error;
mod exchanges;
pub mod https;
pub mod json;
mod limits;
mod metrics;
mod metrics_rabbit;
mod overview;
mod policies;
mod query;
mod queues;
mod shape;
mod topic_permissions;

use crate::broker::Broker;
use auth::Auth;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use bindings::Kind;
use bytes::Bytes;
use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

type P3 = Path<(String, String, String)>;
type P4 = Path<(String, String, String, String)>;

/// Every route of the API, the metrics and the dashboard.
pub fn router(b: Arc<Broker>) -> Router {
    let api = Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/cluster-name", get(overview::cluster_name))
        .route("/api/nodes", get(overview::nodes))
        .route("/api/nodes/{name}", get(overview::node))
        .route("/api/whoami", get(overview::whoami))
        .route(
            "/api/extensions",
            get(|_: Auth| async { axum::Json(serde_json::json!([])) }),
        )
        .route("/api/policies", get(policies::list_all))
        .route("/api/policies/{vhost}", get(policies::list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(policies::show)
                .put(policies::put)
                .delete(policies::delete),
        )
        .route("/api/parameters", get(compat::parameters_all))
        .route(
            "/api/parameters/{component}",
            get(compat::parameters_component),
        )
        .route(
            "/api/parameters/{component}/{vhost}",
            get(compat::parameters_vhost),
        )
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(compat::parameter)
                .put(compat::put_parameter)
                .delete(compat::delete_parameter),
        )
        .route("/api/global-parameters", get(compat::global_parameters_all))
        .route(
            "/api/global-parameters/{name}",
            get(compat::global_parameter),
        )
        .route("/api/operator-policies", get(compat::operator_policies_all))
        .route(
            "/api/operator-policies/{vhost}",
            get(compat::operator_policies_vhost),
        )
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(compat::operator_policy)
                .put(compat::put_operator_policy)
                .delete(compat::operator_policy),
        )
        .route("/api/feature-flags", get(compat::feature_flags))
        .route("/api/auth", get(compat::auth_settings))
        .route("/api/healthchecks/node", get(compat::healthcheck_node))
        .route(
            "/api/healthchecks/node/{node}",
            get(compat::healthcheck_named),
        )
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(compat::certificate_expiration),
        )
        .route("/api/rebalance/queues", post(compat::rebalance))
        .route("/api/health/checks/alarms", get(overview::alarms))
        .route("/api/health/checks/local-alarms", get(overview::alarms))
        .route(
            "/api/health/checks/ready-to-serve-clients",
            get(overview::ready),
        )
        .route("/api/health/checks/virtual-hosts", get(overview::always_ok))
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(overview::single_node),
        )
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(overview::single_node),
        )
        .route(
            "/api/health/checks/port-listener/{port}",
            get(overview::port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(overview::protocol_listener),
        )
        .route("/api/aliveness-test/{vhost}", get(overview::aliveness))
        .route("/api/connections", get(connections::list))
        .route(
            "/api/connections/{name}",
            get(connections::show).delete(connections::close),
        )
        .route(
            "/api/connections/{name}/channels",
            get(connections::channels_of),
        )
        .route("/api/channels", get(connections::channels))
        .route("/api/channels/{name}", get(connections::channel))
        .route("/api/consumers", get(connections::consumers_all))
        .route("/api/consumers/{vhost}", get(connections::consumers_vhost))
        .route("/api/exchanges", get(exchanges::list_all))
        .route("/api/exchanges/{vhost}", get(exchanges::list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchanges::show)
                .put(exchanges::declare)
                .delete(exchanges::delete),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(exchanges::publish),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchanges::bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchanges::bindings_destination),
        )
        .route("/api/queues", get(queues::list_all))
        .route("/api/queues/{vhost}", get(queues::list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queues::show)
                .put(queues::declare)
                .delete(queues::delete),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(queues::purge),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queues::get))
        .route("/api/queues/{vhost}/{name}/bindings", get(queues::bindings))
        .route("/api/bindings", get(bindings::list_all))
        .route("/api/bindings/{vhost}", get(bindings::list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/q/{dest}",
            get(|a: Auth, Path(p): P3| bindings::list_between(a, Kind::Queue, p)).post(
                |a: Auth, Path(p): P3, body: Bytes| bindings::create(a, Kind::Queue, p, body),
            ),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{dest}",
            get(|a: Auth, Path(p): P3| bindings::list_between(a, Kind::Exchange, p)).post(
                |a: Auth, Path(p): P3, body: Bytes| bindings::create(a, Kind::Exchange, p, body),
            ),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}",
            get(|a: Auth, Path(p): P4| bindings::show(a, Kind::Queue, p))
                .delete(|a: Auth, Path(p): P4| bindings::delete(a, Kind::Queue, p)),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}",
            get(|a: Auth, Path(p): P4| bindings::show(a, Kind::Exchange, p))
                .delete(|a: Auth, Path(p): P4| bindings::delete(a, Kind::Exchange, p)),
        )
        .route("/api/vhosts", get(admin::vhosts))
        .route(
            "/api/vhosts/{name}",
            get(admin::vhost)
                .put(admin::put_vhost)
                .delete(admin::delete_vhost),
        )
        .route(
            "/api/vhosts/{name}/permissions",
            get(admin::vhost_permissions),
        )
        .route(
            "/api/vhosts/{vhost}/connections",
            get(connections::list_vhost),
        )
        .route(
            "/api/vhosts/{vhost}/channels",
            get(connections::channels_vhost),
        )
        .route("/api/users", get(admin::users))
        .route(
            "/api/users/without-permissions",
            get(admin::users_without_permissions),
        )
        .route("/api/users/bulk-delete", post(admin::bulk_delete_users))
        .route(
            "/api/users/{name}",
            get(admin::user)
                .put(admin::put_user)
                .delete(admin::delete_user),
        )
        .route(
            "/api/users/{name}/permissions",
            get(admin::user_permissions),
        )
        .route("/api/permissions", get(admin::permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(admin::permission)
                .put(admin::put_permission)
                .delete(admin::delete_permission),
        )
        .route("/api/topic-permissions", get(topic_permissions::all))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(topic_permissions::show)
                .put(topic_permissions::put)
                .delete(topic_permissions::delete),
        )
        .route(
            "/api/users/{user}/topic-permissions",
            get(topic_permissions::of_user),
        )
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(topic_permissions::of_vhost),
        )
        .route("/api/vhost-limits", get(limits::vhost_all))
        .route("/api/vhost-limits/{vhost}", get(limits::vhost_one))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            axum::routing::put(limits::put_vhost).delete(limits::delete_vhost),
        )
        .route("/api/user-limits", get(limits::user_all))
        .route("/api/user-limits/{user}", get(limits::user_one))
        .route(
            "/api/user-limits/{user}/{name}",
            axum::routing::put(limits::put_user).delete(limits::delete_user),
        )
        .route(
            "/api/definitions",
            get(definitions::get_all).post(definitions::post_all),
        )
        .route(
            "/api/definitions/{vhost}",
            get(definitions::get_vhost).post(definitions::post_vhost),
        );
    api.merge(metrics_routes())
        .route("/", get(dashboard::page))
        .route("/index.html", get(dashboard::page))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn(query::apply))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(b)
}

fn metrics_routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/metrics/per-object", get(metrics::per_object))
}

/// Only the metrics (the separate Prometheus port).
pub fn metrics_router(b: Arc<Broker>) -> Router {
    metrics_routes()
        .fallback(|| async { ApiError::not_found() })
        .with_state(b)
}

/// Errors axum produces itself (a path segment that is not UTF-8, a query that does not parse,
/// a body over the limit) come as plain text: give them the API's JSON shape.
async fn json_errors(r: Response) -> Response {
    let s = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(s.is_client_error() || s.is_server_error()) || is_json {
        return r;
    }
    let (_, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let reason = String::from_utf8_lossy(&text).into_owned();
    let mut e = ApiError::new(
        if s == StatusCode::INTERNAL_SERVER_ERROR {
            StatusCode::BAD_REQUEST
        } else {
            s
        },
        "bad_request",
        if reason.is_empty() {
            s.to_string()
        } else {
            reason
        },
    );
    if s == StatusCode::PAYLOAD_TOO_LARGE {
        e.error = "payload_too_large";
    }
    e.into_response()
}

/// Serve `app` on `listener` (plain TCP, or [`https::TlsListener`]) until `shutdown` turns true.
pub async fn serve<L>(listener: L, app: Router, mut shutdown: watch::Receiver<bool>)
where
    L: Listener<Addr = SocketAddr>,
{
    let svc = app.into_make_service_with_connect_info::<SocketAddr>();
    // axum hands the peer address (ConnectInfo) over for any listener through `tap_io`.
    let listener = listener.tap_io(|_| {});
    let stop = async move {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(e) = axum::serve(listener, svc)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("HTTP server failed: {e}");
    }
}

/// Headers every dashboard response carries.
fn no_cache() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}
