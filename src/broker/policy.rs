//! Policies (RabbitMQ's `set_policy`): a named, vhost-scoped regular expression over queue and/or
//! exchange names with a definition of optional settings (`message-ttl`, `max-length`,
//! `dead-letter-exchange`, …). At most one policy applies to an object: the matching one with the
//! highest priority (ties: the greater name, so the choice is at least deterministic). A queue's
//! own `x-…` arguments win over its policy's keys, as RabbitMQ documents. Policies come from
//! `[[policies]]` in the config file and from `VHost::set_policy` (persisted with the definitions,
//! for the HTTP API).

use amq_protocol::types::AMQPValue;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a policy applies to (`apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ApplyTo {
    #[serde(rename = "queues")]
    Queues,
    #[serde(rename = "classic_queues")]
    ClassicQueues,
    #[serde(rename = "quorum_queues")]
    QuorumQueues,
    #[serde(rename = "streams")]
    Streams,
    #[serde(rename = "exchanges")]
    Exchanges,
    #[default]
    #[serde(rename = "all")]
    All,
}

impl ApplyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Streams => "streams",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }
}

/// The kind of object a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    ClassicQueue,
    QuorumQueue,
    Stream,
    Exchange,
}

/// A policy as set and listed (the JSON shape of RabbitMQ's `/api/policies`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default)]
    pub apply_to: ApplyTo,
    #[serde(default)]
    pub priority: i64,
    pub definition: BTreeMap<String, Value>,
}

/// A validated policy with its compiled pattern.
#[derive(Debug, Clone)]
pub struct Policy {
    pub def: PolicyDef,
    regex: Regex,
}

/// Keys a policy definition may hold and what their values must be.
enum Check {
    /// Any string.
    Text,
    /// A non-empty string.
    Str,
    NonNegInt,
    PosInt,
    /// `delivery-limit`: -1 (unlimited, RabbitMQ 4) or more.
    Limit,
    OneOf(&'static [&'static str]),
}

fn check_for(key: &str) -> Option<Check> {
    Some(match key {
        // Any string, the empty one (the default exchange) included, as RabbitMQ.
        "alternate-exchange" | "dead-letter-exchange" | "dead-letter-routing-key" => Check::Text,
        "max-age" => Check::Str,
        "message-ttl"
        | "max-length"
        | "max-length-bytes"
        | "max-in-memory-length"
        | "max-in-memory-bytes"
        | "consumer-timeout"
        | "stream-max-segment-size-bytes" => Check::NonNegInt,
        "expires" => Check::PosInt,
        "delivery-limit" => Check::Limit,
        "overflow" => Check::OneOf(&["drop-head", "reject-publish", "reject-publish-dlx"]),
        "queue-mode" => Check::OneOf(&["default", "lazy"]),
        "queue-version" => Check::OneOf(&["1", "2"]),
        "dead-letter-strategy" => Check::OneOf(&["at-most-once", "at-least-once"]),
        "queue-leader-locator" => Check::OneOf(&["client-local", "balanced"]),
        _ => return None,
    })
}

fn check_value(key: &str, v: &Value) -> Result<(), String> {
    let Some(check) = check_for(key) else {
        if key == "max-priority" || key == "x-max-priority" {
            return Err(format!(
                "'{key}' cannot be set by a policy: the number of priorities is fixed when a \
                 queue is declared (use the x-max-priority argument)"
            ));
        }
        return Err(format!("'{key}' is not a recognised policy setting"));
    };
    let int = v.as_i64();
    let ok = match check {
        Check::Text => v.is_string(),
        Check::Str => v.as_str().is_some_and(|s| !s.is_empty()),
        Check::NonNegInt => int.is_some_and(|n| n >= 0),
        Check::PosInt => int.is_some_and(|n| n >= 1),
        Check::Limit => int.is_some_and(|n| n >= -1),
        Check::OneOf(allowed) => {
            let s = v
                .as_str()
                .map(str::to_string)
                .or_else(|| int.map(|n| n.to_string()));
            s.is_some_and(|s| allowed.contains(&s.as_str()))
        }
    };
    if ok {
        return Ok(());
    }
    let want = match check {
        Check::Text => "a string".to_string(),
        Check::Str => "a non-empty string".to_string(),
        Check::NonNegInt => "a non-negative integer".to_string(),
        Check::PosInt => "a positive integer".to_string(),
        Check::Limit => "an integer of -1 or more".to_string(),
        Check::OneOf(allowed) => format!("one of {}", allowed.join(", ")),
    };
    Err(format!("'{key}' must be {want}, got {v}"))
}

impl Policy {
    /// Validate a definition: the pattern compiles, every key is a setting policies may set and
    /// its value has the right type.
    pub fn new(def: PolicyDef) -> Result<Policy, String> {
        if def.name.is_empty() {
            return Err("a policy needs a name".into());
        }
        if def.name.len() > 255 {
            return Err(format!(
                "policy name '{}' is longer than 255 bytes",
                def.name
            ));
        }
        let regex = Regex::new(&def.pattern)
            .map_err(|e| format!("invalid pattern '{}': {e}", def.pattern))?;
        if def.definition.is_empty() {
            return Err(format!("policy '{}' has an empty definition", def.name));
        }
        for (k, v) in &def.definition {
            check_value(k, v).map_err(|e| format!("policy '{}': {e}", def.name))?;
        }
        Ok(Policy { def, regex })
    }

    /// Does this policy apply to an object of `target` kind named `name`?
    pub fn applies(&self, target: Target, name: &str) -> bool {
        let kind = match self.def.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => target != Target::Exchange,
            ApplyTo::ClassicQueues => target == Target::ClassicQueue,
            ApplyTo::QuorumQueues => target == Target::QuorumQueue,
            ApplyTo::Streams => target == Target::Stream,
            ApplyTo::Exchanges => target == Target::Exchange,
        };
        kind && self.regex.is_match(name)
    }

    /// A definition key as an argument value (integers as long, strings as long strings).
    pub fn get(&self, key: &str) -> Option<AMQPValue> {
        json_to_amqp(self.def.definition.get(key)?)
    }
}

fn json_to_amqp(v: &Value) -> Option<AMQPValue> {
    Some(match v {
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64()?),
        },
        Value::String(s) => AMQPValue::LongString(s.as_str().into()),
        _ => return None,
    })
}

/// The policy that applies: the highest priority among the matching ones.
pub fn choose<'a>(
    policies: impl IntoIterator<Item = &'a std::sync::Arc<Policy>>,
    target: Target,
    name: &str,
) -> Option<std::sync::Arc<Policy>> {
    policies
        .into_iter()
        .filter(|p| p.applies(target, name))
        .max_by(|a, b| (a.def.priority, &a.def.name).cmp(&(b.def.priority, &b.def.name)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn def(name: &str, pattern: &str, apply_to: ApplyTo, priority: i64, d: Value) -> PolicyDef {
        PolicyDef {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to,
            priority,
            definition: serde_json::from_value(d).expect("definition"),
        }
    }

    #[test]
    fn the_highest_priority_match_wins() {
        let ps: Vec<Arc<Policy>> = vec![
            Arc::new(
                Policy::new(def(
                    "low",
                    "^jobs",
                    ApplyTo::All,
                    0,
                    json!({"max-length": 5}),
                ))
                .unwrap(),
            ),
            Arc::new(
                Policy::new(def(
                    "high",
                    "^jobs\\.",
                    ApplyTo::Queues,
                    10,
                    json!({"max-length": 9}),
                ))
                .unwrap(),
            ),
            Arc::new(
                Policy::new(def(
                    "ex",
                    ".*",
                    ApplyTo::Exchanges,
                    99,
                    json!({"alternate-exchange": "ae"}),
                ))
                .unwrap(),
            ),
        ];
        let p = choose(&ps, Target::ClassicQueue, "jobs.a").expect("a policy");
        assert_eq!(p.def.name, "high");
        assert_eq!(p.get("max-length"), Some(AMQPValue::LongLongInt(9)));
        assert_eq!(
            choose(&ps, Target::ClassicQueue, "jobsx")
                .expect("a policy")
                .def
                .name,
            "low"
        );
        assert_eq!(
            choose(&ps, Target::Exchange, "jobs.a")
                .expect("a policy")
                .def
                .name,
            "ex"
        );
        assert!(choose(&ps, Target::ClassicQueue, "other").is_none());
    }

    #[test]
    fn definitions_are_validated() {
        let bad = |d: Value| Policy::new(def("p", ".*", ApplyTo::All, 0, d)).unwrap_err();
        assert!(bad(json!({"message-ttl": -1})).contains("non-negative"));
        assert!(bad(json!({"message-ttl": "10"})).contains("non-negative"));
        assert!(bad(json!({"overflow": "drop-tail"})).contains("one of"));
        assert!(bad(json!({"max-priority": 5})).contains("cannot be set by a policy"));
        assert!(bad(json!({"no-such-key": 1})).contains("not a recognised"));
        assert!(bad(json!({})).contains("empty definition"));
        assert!(Policy::new(def("p", "(", ApplyTo::All, 0, json!({"expires": 1}))).is_err());
        assert!(Policy::new(def(
            "p",
            ".*",
            ApplyTo::All,
            0,
            json!({"delivery-limit": -1})
        ))
        .is_ok());
    }

    #[test]
    fn apply_to_round_trips_as_rabbitmq_spells_it() {
        let d = def(
            "p",
            "^a",
            ApplyTo::ClassicQueues,
            1,
            json!({"expires": 1000}),
        );
        let j = serde_json::to_value(&d).expect("json");
        assert_eq!(j["apply-to"], "classic_queues");
        let back: PolicyDef = serde_json::from_value(j).expect("back");
        assert_eq!(back, d);
    }
}
