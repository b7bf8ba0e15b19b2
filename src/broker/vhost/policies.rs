//! A vhost's policies: set, delete and list them (the API the HTTP layer's
//! `PUT`/`DELETE /api/policies/{vhost}/{name}` calls), persist the ones set at run time with the
//! definitions, and keep every queue and exchange pointing at the policy that applies to it (on
//! declare, and again whenever the policies change).

use super::VHost;
use crate::broker::exchange::Exchange;
use crate::broker::policy::{choose, Policy, PolicyDef, Target};
use crate::broker::queue::Queue;
use crate::store::definitions::PolicyRow;
use amq_protocol::types::AMQPValue;
use std::sync::Arc;

/// Why a policy could not be set or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The definition is not valid (HTTP 400 in RabbitMQ's API).
    #[error("{0}")]
    Invalid(String),
    /// The definitions store failed.
    #[error("{0}")]
    Store(String),
}

/// Which kind of object a queue is, for `apply-to`.
fn queue_target(q: &Queue) -> Target {
    if q.stream.is_some() {
        return Target::Stream;
    }
    match q.options.arguments.inner().get("x-queue-type") {
        Some(AMQPValue::LongString(s)) if s.as_bytes() == b"quorum" => Target::QuorumQueue,
        Some(AMQPValue::ShortString(s)) if s.as_str() == "quorum" => Target::QuorumQueue,
        _ => Target::ClassicQueue,
    }
}

impl VHost {
    /// Add or replace a policy (by name) and apply it at once; persisted when the vhost has a
    /// store, so it survives a restart.
    pub fn set_policy(&self, def: PolicyDef) -> Result<(), PolicyError> {
        self.put_policy(def, true)
    }

    /// A policy from the config file: applied like any other, never written to the store (the
    /// file is read again at every start).
    pub fn set_config_policy(&self, def: PolicyDef) -> Result<(), PolicyError> {
        self.put_policy(def, false)
    }

    fn put_policy(&self, mut def: PolicyDef, persist: bool) -> Result<(), PolicyError> {
        if def.vhost.is_empty() {
            def.vhost = self.name.to_string();
        }
        if *def.vhost != *self.name {
            return Err(PolicyError::Invalid(format!(
                "policy '{}' is for vhost '{}', not '{}'",
                def.name, def.vhost, self.name
            )));
        }
        let p = Arc::new(Policy::new(def).map_err(PolicyError::Invalid)?);
        let _t = self.topology.lock();
        if let (true, Some(store)) = (persist, &self.persist) {
            let value = serde_json::to_value(&p.def)
                .map_err(|e| PolicyError::Store(format!("cannot encode policy: {e}")))?;
            store
                .defs
                .put_policy(&PolicyRow {
                    vhost: p.def.vhost.clone(),
                    name: p.def.name.clone(),
                    value,
                })
                .map_err(|e| PolicyError::Store(e.to_string()))?;
        }
        {
            let mut list = self.policies.write();
            list.retain(|q| q.def.name != p.def.name);
            list.push(p);
        }
        self.reapply_policies();
        Ok(())
    }

    /// Delete a policy; false if there was none of that name.
    pub fn delete_policy(&self, name: &str) -> Result<bool, PolicyError> {
        let _t = self.topology.lock();
        if !self.policies.read().iter().any(|p| p.def.name == name) {
            return Ok(false);
        }
        if let Some(store) = &self.persist {
            store
                .defs
                .delete_policy(&self.name, name)
                .map_err(|e| PolicyError::Store(e.to_string()))?;
        }
        self.policies.write().retain(|p| p.def.name != name);
        self.reapply_policies();
        Ok(true)
    }

    /// Every policy of the vhost, by name.
    pub fn list_policies(&self) -> Vec<PolicyDef> {
        let mut v: Vec<PolicyDef> = self.policies.read().iter().map(|p| p.def.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One policy by name.
    pub fn get_policy(&self, name: &str) -> Option<PolicyDef> {
        self.policies
            .read()
            .iter()
            .find(|p| p.def.name == name)
            .map(|p| p.def.clone())
    }

    /// Put back a stored policy at start-up (invalid ones are skipped with a warning).
    pub(crate) fn restore_policy(&self, value: serde_json::Value) {
        let p = serde_json::from_value::<PolicyDef>(value)
            .map_err(|e| e.to_string())
            .and_then(Policy::new);
        match p {
            Ok(p) => {
                let mut list = self.policies.write();
                list.retain(|q| q.def.name != p.def.name);
                list.push(Arc::new(p));
            }
            Err(e) => tracing::warn!(vhost = %self.name, "skipping a stored policy: {e}"),
        }
    }

    /// Point every queue and exchange at the policy that applies to it now.
    pub(crate) fn reapply_policies(&self) {
        for q in self.queues() {
            self.apply_policy_to_queue(&q);
        }
        for e in self.exchanges() {
            self.apply_policy_to_exchange(&e);
        }
    }

    pub(crate) fn apply_policy_to_queue(&self, q: &Queue) {
        let p = choose(self.policies.read().iter(), queue_target(q), &q.name);
        q.set_policy(p);
    }

    pub(crate) fn apply_policy_to_exchange(&self, e: &Exchange) {
        if e.is_default() {
            return;
        }
        let p = choose(self.policies.read().iter(), Target::Exchange, &e.name);
        e.set_policy(p);
    }
}
