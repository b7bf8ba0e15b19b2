//! API errors as RabbitMQ's management API returns them: a status and a JSON body
//! `{"error": ..., "reason": ...}`. Input problems are 400/401/404/405, never 500; a refusal
//! is 401 `not_authorised`, as RabbitMQ has it.

use crate::broker::access::AdminError;
use crate::error::{code, AmqpError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
    /// Ask the client for credentials (a 401 for a request that sent none).
    pub challenge: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.into(),
            challenge: false,
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    pub fn unauthorized(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    /// Authenticated but not allowed: RabbitMQ answers 401 `not_authorised` (not 403), and
    /// scripts test for that status.
    pub fn forbidden(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "the method is not allowed for this resource",
        )
    }

    pub fn internal(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", reason)
    }
}

impl From<AmqpError> for ApiError {
    /// An AMQP refusal from the broker: 404 for NOT_FOUND, 401 for ACCESS_REFUSED, 500 for a
    /// storage failure (not the request's fault), else 400 (inequivalent arguments, in use...).
    fn from(e: AmqpError) -> ApiError {
        // RabbitMQ's reason is the explanation without the AMQP reply-text prefix
        // ("PRECONDITION_FAILED - ").
        let text = match e.text.split_once(" - ") {
            Some((name, rest)) if name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                rest.to_string()
            }
            _ => e.text,
        };
        match e.code {
            code::NOT_FOUND => ApiError::new(StatusCode::NOT_FOUND, "not_found", text),
            // What RabbitMQ's management plugin answers to a refused operation (its channel
            // was closed with 403), whatever the reason.
            code::ACCESS_REFUSED => ApiError::unauthorized("Access refused."),
            code::INTERNAL_ERROR | code::RESOURCE_ERROR => ApiError::internal(text),
            _ => ApiError::bad_request(text),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::NotFound(r) => ApiError::new(StatusCode::NOT_FOUND, "not_found", r),
            AdminError::BadRequest(r) => ApiError::bad_request(r),
            AdminError::Store(r) => ApiError::internal(r),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.error, "reason": self.reason})),
        )
            .into_response();
        if self.challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"warren management\""),
            );
        }
        r
    }
}

/// A JSON request body, parsed whatever its content type says (rabbitmqadmin and curl users do
/// not always set one); an empty body is `{}`.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}
