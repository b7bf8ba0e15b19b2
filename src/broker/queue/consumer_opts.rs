//! Arguments about consumers, validated with RabbitMQ's texts: `x-priority` and
//! `x-consumer-timeout` on basic.consume, `x-single-active-consumer` and `x-consumer-timeout` on
//! queue.declare. RabbitMQ reports a bad one as `406 PRECONDITION_FAILED - invalid arg 'KEY' for
//! queue 'q' in vhost '/': {unacceptable_type,longstr}` (or `{value_negative,-1}`).

use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::{AMQPValue, FieldTable};

/// What a consumer asked for in its basic.consume arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerArgs {
    /// `x-priority`: higher gets messages first; 0 when absent.
    pub priority: i32,
    /// `x-consumer-timeout` in ms (0 = no timeout), overriding the queue's and the broker's.
    pub timeout_ms: Option<u64>,
}

/// RabbitMQ's name for a field value type, as it prints them in argument errors.
pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// The value of an integer-typed field (RabbitMQ's integer argument types), else None.
pub use super::args::int as int_value;

/// `406 invalid arg 'key' for <what>: <detail>` as RabbitMQ words it.
pub fn invalid_arg(key: &str, what: &str, detail: impl std::fmt::Display) -> AmqpError {
    AmqpError::precondition_failed(format!("invalid arg '{key}' for {what}: {detail}"))
}

fn unacceptable(key: &str, what: &str, v: &AMQPValue) -> AmqpError {
    invalid_arg(key, what, format!("{{unacceptable_type,{}}}", type_name(v)))
}

/// Consumer arguments only stream queues take: on another queue type they are a 406.
const STREAM_ONLY: [&str; 3] = [
    "x-stream-offset",
    "x-stream-filter",
    "x-stream-match-unfiltered",
];

/// Parse basic.consume arguments of a classic or quorum queue. `what` names the queue
/// (`queue 'q' in vhost '/'`), `module` its type as RabbitMQ names it (`rabbit_classic_queue`).
pub fn consumer_args(args: &FieldTable, what: &str, module: &str) -> AmqpResult<ConsumerArgs> {
    let mut out = ConsumerArgs::default();
    if let Some(v) = args.inner().get("x-priority") {
        // RabbitMQ's `check_int_arg` text.
        let n = int_value(v).ok_or_else(|| {
            invalid_arg(
                "x-priority",
                what,
                format!("\"expected integer, got {}\"", type_name(v)),
            )
        })?;
        // RabbitMQ accepts any integer; priorities only compare, so clamping is lossless in
        // practice.
        out.priority = n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    }
    if let Some(key) = STREAM_ONLY.iter().find(|k| args.inner().contains_key(**k)) {
        return Err(AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for {what} of queue type {module}"
        )));
    }
    // As RabbitMQ, x-consumer-timeout is not validated: a value that is not a non-negative
    // integer is ignored (the queue's or the broker's timeout applies).
    out.timeout_ms = args.inner().get("x-consumer-timeout").and_then(timeout_ms);
    Ok(out)
}

/// Check the consumer-related queue.declare arguments.
pub fn check_queue_args(args: &FieldTable, what: &str) -> AmqpResult<()> {
    if let Some(v) = args.inner().get("x-single-active-consumer") {
        if !matches!(v, AMQPValue::Boolean(_)) {
            return Err(unacceptable("x-single-active-consumer", what, v));
        }
    }
    // x-consumer-timeout is not validated at declare (RabbitMQ does not either): an unusable
    // value is ignored when a consumer's timeout is worked out.
    Ok(())
}

/// `x-single-active-consumer = true`?
pub fn single_active(args: &FieldTable) -> bool {
    matches!(
        args.inner().get("x-single-active-consumer"),
        Some(AMQPValue::Boolean(true))
    )
}

/// A timeout value (from an argument or a policy) in ms, if it is a usable one.
pub fn timeout_ms(v: &AMQPValue) -> Option<u64> {
    int_value(v).and_then(|n| u64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::ShortString;

    fn table(k: &str, v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(ShortString::from(k), v);
        t
    }

    #[test]
    fn priority_accepts_any_integer_type() {
        for v in [
            AMQPValue::ShortShortInt(-3),
            AMQPValue::ShortInt(300),
            AMQPValue::LongInt(10),
            AMQPValue::LongLongInt(7),
            AMQPValue::LongUInt(5),
        ] {
            let want = int_value(&v).map(|n| n as i32);
            let a = consumer_args(
                &table("x-priority", v),
                "queue 'q' in vhost '/'",
                "rabbit_classic_queue",
            )
            .unwrap();
            assert_eq!(Some(a.priority), want);
        }
    }

    #[test]
    fn priority_of_another_type_is_the_rabbitmq_406() {
        let e = consumer_args(
            &table("x-priority", AMQPValue::LongString("high".into())),
            "queue 'q' in vhost '/'",
            "rabbit_classic_queue",
        )
        .unwrap_err();
        assert_eq!(e.code, 406);
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
    }

    #[test]
    fn queue_args_are_checked() {
        let what = "queue 'q' in vhost '/'";
        assert!(check_queue_args(
            &table("x-single-active-consumer", AMQPValue::Boolean(true)),
            what
        )
        .is_ok());
        let e = check_queue_args(
            &table("x-single-active-consumer", AMQPValue::LongInt(1)),
            what,
        )
        .unwrap_err();
        assert!(
            e.text.ends_with("{unacceptable_type,signedint}"),
            "{}",
            e.text
        );
        // As RabbitMQ: x-consumer-timeout is not validated, an unusable value is ignored.
        assert!(
            check_queue_args(&table("x-consumer-timeout", AMQPValue::LongInt(-5)), what).is_ok()
        );
        let a = consumer_args(
            &table("x-consumer-timeout", AMQPValue::LongInt(-5)),
            what,
            "rabbit_classic_queue",
        )
        .unwrap();
        assert_eq!(a.timeout_ms, None);
        assert!(single_active(&table(
            "x-single-active-consumer",
            AMQPValue::Boolean(true)
        )));
        assert!(!single_active(&FieldTable::default()));
    }
}
