//! Binding and unbinding (queue.bind/unbind, exchange.bind/unbind) with RabbitMQ's checks,
//! writing durable bindings down before they take effect.

use super::{check_owner, VHost};
use crate::broker::exchange::{Dest, Exchange};
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::FieldTable;
use std::sync::Arc;

impl VHost {
    fn source_for_bind(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        self.exchange(name).ok_or_else(|| self.no_exchange(name))
    }

    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        args: &FieldTable,
        conn: u64,
    ) -> AmqpResult<()> {
        let _t = self.topology.lock();
        let q = self.queue_for(queue, conn)?;
        let e = self.source_for_bind(exchange)?;
        self.bind(&e, Dest::Queue(q), key, args)
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        args: &FieldTable,
        conn: u64,
    ) -> AmqpResult<()> {
        let _t = self.topology.lock();
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        // As RabbitMQ: unbinding from a queue or exchange that does not exist is done (only a
        // binding that exists is removed).
        let Some(q) = self.queue(queue) else {
            return Ok(());
        };
        check_owner(&q, conn)?;
        let Some(e) = self.exchange(exchange) else {
            return Ok(());
        };
        self.unbind(&e, Dest::Queue(q), key, args)
    }

    pub fn bind_exchange(
        &self,
        dest: &str,
        source: &str,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        let _t = self.topology.lock();
        let d = self.source_for_bind(dest)?;
        let s = self.source_for_bind(source)?;
        self.bind(&s, Dest::Exchange(d), key, args)
    }

    pub fn unbind_exchange(
        &self,
        dest: &str,
        source: &str,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        let _t = self.topology.lock();
        if dest.is_empty() || source.is_empty() {
            return Err(default_exchange_refused());
        }
        // Missing ends: nothing to remove, as RabbitMQ.
        let (Some(d), Some(s)) = (self.exchange(dest), self.exchange(source)) else {
            return Ok(());
        };
        self.unbind(&s, Dest::Exchange(d), key, args)
    }

    /// Add a binding, writing it down first when both ends are durable (topology lock held).
    fn bind(&self, src: &Exchange, dest: Dest, key: &str, args: &FieldTable) -> AmqpResult<()> {
        if !src
            .bind(dest.clone(), key, args)
            .map_err(AmqpError::precondition_failed)?
        {
            return Ok(());
        }
        if let Some(p) = &self.persist {
            if let Err(e) = p.save_binding(&self.name, src, &dest, key, args) {
                src.unbind(&dest, key, args);
                return Err(e);
            }
        }
        Ok(())
    }

    fn unbind(
        &self,
        src: &Arc<Exchange>,
        dest: Dest,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        if src.unbind(&dest, key, args) {
            if let Some(p) = &self.persist {
                p.forget_binding(&self.name, src, &dest, key, args)?;
            }
            self.maybe_auto_delete(src);
        }
        Ok(())
    }
}

/// RabbitMQ's refusal of the default exchange as either end of a binding.
pub(super) fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}
