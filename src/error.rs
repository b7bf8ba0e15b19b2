//! The one error type for protocol failures. Every broker or connection failure that a client must
//! hear about becomes an `AmqpError`; `connection::dispatch` alone turns it into channel.close or
//! connection.close. Texts follow RabbitMQ's wording ("NOT_FOUND - no queue 'jobs' in vhost '/'").

use std::fmt;

/// Whether the error closes the channel or the whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

/// A failure with its AMQP reply code, scope and text; class/method name the method that failed
/// (0/0 when it was not a method, e.g. a bad frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub scope: Scope,
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

/// Reply codes (AMQP 0-9-1 constants as RabbitMQ uses them).
pub mod code {
    pub const REPLY_SUCCESS: u16 = 200;
    pub const CONTENT_TOO_LARGE: u16 = 311;
    pub const NO_ROUTE: u16 = 312;
    pub const CONNECTION_FORCED: u16 = 320;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const RESOURCE_LOCKED: u16 = 405;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const FRAME_ERROR: u16 = 501;
    pub const SYNTAX_ERROR: u16 = 502;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const NOT_ALLOWED: u16 = 530;
    pub const NOT_IMPLEMENTED: u16 = 540;
    pub const INTERNAL_ERROR: u16 = 541;
}

fn code_name(c: u16) -> &'static str {
    match c {
        code::CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        code::NO_ROUTE => "NO_ROUTE",
        code::CONNECTION_FORCED => "CONNECTION_FORCED",
        code::ACCESS_REFUSED => "ACCESS_REFUSED",
        code::NOT_FOUND => "NOT_FOUND",
        code::RESOURCE_LOCKED => "RESOURCE_LOCKED",
        code::PRECONDITION_FAILED => "PRECONDITION_FAILED",
        code::FRAME_ERROR => "FRAME_ERROR",
        code::SYNTAX_ERROR => "SYNTAX_ERROR",
        code::COMMAND_INVALID => "COMMAND_INVALID",
        code::CHANNEL_ERROR => "CHANNEL_ERROR",
        code::UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        code::RESOURCE_ERROR => "RESOURCE_ERROR",
        code::NOT_ALLOWED => "NOT_ALLOWED",
        code::NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        code::INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "REPLY",
    }
}

impl AmqpError {
    fn new(scope: Scope, code: u16, detail: impl fmt::Display) -> AmqpError {
        AmqpError {
            scope,
            code,
            text: format!("{} - {}", code_name(code), detail),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Attach the class/method that failed (reported in the close frame).
    pub fn on(mut self, class_id: u16, method_id: u16) -> AmqpError {
        if self.class_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    // Channel-scoped errors.
    pub fn access_refused(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Channel, code::ACCESS_REFUSED, d)
    }
    pub fn not_found(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Channel, code::NOT_FOUND, d)
    }
    pub fn resource_locked(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Channel, code::RESOURCE_LOCKED, d)
    }
    pub fn precondition_failed(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Channel, code::PRECONDITION_FAILED, d)
    }

    // Connection-scoped errors: the spec's hard errors. RabbitMQ closes the connection for every
    // one of them, even when a channel method raised it (rabbit_binary_generator:map_exception),
    // so 506 and 540 (`immediate=true`, `prefetch_size != 0`) are connection errors too.
    pub fn resource_error(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::RESOURCE_ERROR, d)
    }
    /// The message store refused a write (disk full, I/O error): closes only the publishing
    /// channel, so consumers and other publishers carry on.
    pub fn store_failed(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Channel, code::RESOURCE_ERROR, d)
    }
    pub fn not_implemented(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::NOT_IMPLEMENTED, d)
    }
    pub fn connection_forced(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::CONNECTION_FORCED, d)
    }
    pub fn frame_error(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::FRAME_ERROR, d)
    }
    pub fn syntax_error(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::SYNTAX_ERROR, d)
    }
    pub fn command_invalid(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::COMMAND_INVALID, d)
    }
    pub fn channel_error(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::CHANNEL_ERROR, d)
    }
    pub fn unexpected_frame(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::UNEXPECTED_FRAME, d)
    }
    pub fn not_allowed(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::NOT_ALLOWED, d)
    }
    pub fn internal_error(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::INTERNAL_ERROR, d)
    }
    /// ACCESS_REFUSED that closes the connection (authentication failure).
    pub fn access_refused_connection(d: impl fmt::Display) -> AmqpError {
        Self::new(Scope::Connection, code::ACCESS_REFUSED, d)
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.code)
    }
}

impl std::error::Error for AmqpError {}

/// Result alias for operations that can fail with an AMQP error.
pub type AmqpResult<T> = Result<T, AmqpError>;
