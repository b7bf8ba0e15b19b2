//! A vhost's queues: declare (classic, quorum, stream; server-named, exclusive, durable), restore
//! at start, delete, expire, purge, and the exclusive queues that go with their connection.

use super::*;
use amq_protocol::types::AMQPValue;

impl VHost {
    pub fn declare_queue(
        &self,
        name: &str,
        passive: bool,
        opts: QueueOptions,
        conn: u64,
    ) -> AmqpResult<Declared> {
        self.declare_queue_as(name, passive, opts, conn, None)
    }

    /// queue.declare for a client whose permissions `authz` checks (None: the operator). The
    /// name is generated (server-named queue) or checked first, then configure permission on
    /// it; creating a queue also checks the vhost's queue limit and the dead-letter exchange
    /// permissions, in RabbitMQ's order.
    pub fn declare_queue_as(
        &self,
        name: &str,
        passive: bool,
        opts: QueueOptions,
        conn: u64,
        mut authz: Option<&mut Authz>,
    ) -> AmqpResult<Declared> {
        let _t = self.topology.lock();
        if passive {
            let q = self.queue(name).ok_or_else(|| self.no_queue(name))?;
            check_owner(&q, conn)?;
            return Ok(declared(&q));
        }
        QueueChurn::bump(&self.churn.declared);
        let server_named = name.is_empty();
        let name: Arc<str> = if name.is_empty() {
            Arc::from(generate_name("amq.gen-").as_str())
        } else if reserved(name) && self.queue(name).is_none() {
            return Err(AmqpError::access_refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        } else {
            Arc::from(name)
        };
        if let Some(a) = authz.as_deref_mut() {
            a.check(Perm::Configure, Kind::Queue, &name)?;
        }
        let flags = DeclareFlags {
            durable: opts.durable,
            exclusive: opts.exclusive,
            auto_delete: opts.auto_delete,
            server_named,
        };
        let what = format!("queue '{name}' in vhost '{}'", self.name);
        // As RabbitMQ, an existing queue is only compared with the declare (its arguments are
        // not validated again); a new one has its arguments checked first.
        if let Some(q) = self.queue(&name) {
            check_owner(&q, conn)?;
            let o = &q.options;
            let obj = format!("{name}' in vhost '{}", self.name);
            let (want, have) = (QueueType::of(&opts.arguments), q.queue_type());
            if want.as_str() != have {
                // Absent means classic; otherwise worded as any other argument.
                super::equivalence::assert_args(
                    &o.arguments,
                    &opts.arguments,
                    &["x-queue-type"],
                    &what,
                )?;
            }
            if o.durable != opts.durable {
                return Err(inequivalent(
                    "queue",
                    "durable",
                    &obj,
                    opts.durable,
                    o.durable,
                ));
            }
            if o.exclusive != opts.exclusive {
                return Err(inequivalent(
                    "queue",
                    "exclusive",
                    &obj,
                    opts.exclusive,
                    o.exclusive,
                ));
            }
            if o.auto_delete != opts.auto_delete {
                return Err(inequivalent(
                    "queue",
                    "auto_delete",
                    &obj,
                    opts.auto_delete,
                    o.auto_delete,
                ));
            }
            let keys: Vec<&str> = QueueType::of(&o.arguments)
                .arguments()
                .iter()
                .copied()
                .filter(|k| *k != "x-queue-type") // compared above (absent means classic)
                .collect();
            super::equivalence::assert_args(&o.arguments, &opts.arguments, &keys, &what)?;
            // Redeclaring renews an x-expires lease (not for quorum queues, as in RabbitMQ).
            if q.queue_type() == "classic" {
                q.touch();
            }
            return Ok(declared(&q));
        }
        // RabbitMQ's channel checks the dead-letter exchange's type before the queue's own
        // argument checks, with a text of its own.
        if let Some(v) = opts.arguments.inner().get("x-dead-letter-exchange") {
            if !matches!(v, AMQPValue::LongString(_)) {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid type '{}' for arg 'x-dead-letter-exchange' in {what}",
                    crate::broker::queue::consumer_opts::type_name(v)
                )));
            }
        }
        args::validate(&what, &opts.arguments, &flags)?;
        let max = self.limits.max_queues();
        if max >= 0 && self.queues.len() as i64 >= max {
            return Err(AmqpError::precondition_failed(format!(
                "cannot declare queue '{name}': queue limit in vhost '{}' ({max}) is reached",
                self.name
            )));
        }
        if let (Some(a), Some(dlx)) = (authz, string_arg(&opts.arguments, "x-dead-letter-exchange"))
        {
            a.check(Perm::Read, Kind::Queue, &name)?;
            a.check(Perm::Write, Kind::Exchange, &dlx)?;
        }
        crate::broker::queue::consumer_opts::check_queue_args(
            &opts.arguments,
            &format!("queue '{name}' in vhost '{}'", self.name),
        )?;
        if is_stream(&opts.arguments) {
            let q = self.new_stream(&name, opts)?;
            self.apply_policy_to_queue(&q);
            self.queues.insert(name, q.clone());
            QueueChurn::bump(&self.churn.created);
            return Ok(declared(&q));
        }
        let owner = opts.exclusive.then_some(conn);
        // Exclusive queues die with their connection, so they are never written down.
        let store = match &self.persist {
            Some(p) if opts.durable && !opts.exclusive => {
                Some(p.create_queue(&self.name, &name, &opts)?)
            }
            _ => None,
        };
        let mut q = Queue::new(self.name.clone(), name.clone(), opts, owner).in_vhost(self.home());
        if let Some((id, log)) = store {
            q = q.with_log(id, log, None);
        }
        if let Some(p) = &self.persist {
            q = q.with_paging(p.clone());
        }
        self.apply_policy_to_queue(&q);
        let q = Arc::new(q);
        self.queues.insert(name, q.clone());
        QueueChurn::bump(&self.churn.created);
        q.start_timers();
        Ok(declared(&q))
    }

    /// A new stream queue: durable only, never exclusive or auto-delete (406, as RabbitMQ).
    fn new_stream(&self, name: &Arc<str>, opts: QueueOptions) -> AmqpResult<Arc<Queue>> {
        let invalid = |p: &str| {
            AmqpError::precondition_failed(format!(
                "invalid property '{p}' for queue '{name}' in vhost '{}'",
                self.name
            ))
        };
        // RabbitMQ 4's order and words (`rabbit_queue_type_util`).
        if opts.auto_delete {
            return Err(invalid("auto-delete"));
        }
        if opts.exclusive {
            return Err(invalid("exclusive-owner"));
        }
        if !opts.durable {
            return Err(invalid("non-durable"));
        }
        let cfg = crate::broker::stream::args::config(&opts.arguments).map_err(|e| {
            AmqpError::precondition_failed(format!(
                "{e} for queue '{name}' in vhost '{}'",
                self.name
            ))
        })?;
        let Some(p) = &self.persist else {
            return Err(AmqpError::internal_error(
                "stream queues need a data directory",
            ));
        };
        let (id, s) = p.create_stream(&self.name, name, &opts, cfg)?;
        Ok(Arc::new(
            Queue::new(self.name.clone(), name.clone(), opts, None).with_stream(id, s),
        ))
    }

    /// Put back a stream queue at start-up.
    pub fn restore_stream(&self, name: &str, opts: QueueOptions, id: u64, s: Arc<StreamQueue>) {
        let q = Queue::new(self.name.clone(), Arc::from(name), opts, None).with_stream(id, s);
        self.apply_policy_to_queue(&q);
        self.queues.insert(q.name.clone(), Arc::new(q));
    }

    /// queue.delete; returns the number of ready messages dropped.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn: u64,
    ) -> AmqpResult<u32> {
        let _t = self.topology.lock();
        let Some(q) = self.queue(name) else {
            return Ok(0);
        };
        check_owner(&q, conn)?;
        if q.stream.is_some() {
            // RabbitMQ's stream queue type ignores if-unused and if-empty and reports 0.
            self.remove_queue(&q);
            return Ok(0);
        }
        if if_unused && !q.is_unused() {
            return Err(AmqpError::precondition_failed(format!(
                "{} in use",
                q.describe()
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "{} not empty",
                q.describe()
            )));
        }
        Ok(self.remove_queue(&q))
    }

    /// Delete a queue whose `x-expires` ran out, if it is still unused under the topology lock.
    /// Its messages are not dead-lettered (as RabbitMQ).
    pub fn expire_queue(&self, q: &Arc<Queue>) -> bool {
        let _t = self.topology.lock();
        match self.queue(&q.name) {
            Some(cur) if Arc::ptr_eq(&cur, q) && q.idle_expired() => {
                self.remove_queue(q);
                true
            }
            _ => false,
        }
    }

    /// Delete a queue the broker decided to drop (auto-delete, exclusive owner gone).
    pub fn drop_queue(&self, q: &Arc<Queue>) {
        let _t = self.topology.lock();
        if let Some(cur) = self.queue(&q.name) {
            if Arc::ptr_eq(&cur, q) {
                self.remove_queue(q);
            }
        }
    }

    /// Remove a queue, its bindings, and tell its consumers (topology lock held).
    fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        if let (true, Some(p)) = (q.store_id != 0, &self.persist) {
            if let Err(err) = p.forget_queue(&self.name, &q.name) {
                tracing::error!("{err}");
            }
        }
        if self.queues.remove(&q.name).is_some() {
            QueueChurn::bump(&self.churn.deleted);
        }
        let dest = Dest::Queue(q.clone());
        for e in self.exchanges() {
            if e.unbind_dest(&dest) > 0 {
                self.maybe_auto_delete(&e);
            }
        }
        let (n, cancelled) = q.delete();
        for c in cancelled {
            let _ = c.tx.send(ClientEvent::Cancel {
                channel: c.channel,
                consumer_id: c.consumer_id,
            });
        }
        n
    }

    /// The vhost is being deleted: every queue (with its log) and exchange goes, and durable
    /// ones are forgotten by the store.
    pub fn delete_everything(&self) {
        let _t = self.topology.lock();
        for q in self.queues() {
            self.remove_queue(&q);
        }
        for e in self.exchanges() {
            if e.is_default() || reserved(&e.name) {
                continue;
            }
            if self.exchanges.contains_key(&e.name) {
                self.remove_exchange(&e);
            }
        }
    }

    /// Exclusive queues of a closing connection.
    pub fn drop_exclusive(&self, conn: u64) {
        let owned: Vec<_> = self
            .queues()
            .into_iter()
            .filter(|q| q.owner == Some(conn))
            .collect();
        for q in owned {
            self.drop_queue(&q);
        }
    }

    pub fn purge_queue(&self, name: &str, conn: u64) -> AmqpResult<u32> {
        let q = self.queue_for(name, conn)?;
        if q.stream.is_some() {
            return Err(AmqpError::not_implemented(format!(
                "queue.purge not supported by stream queues {}",
                q.describe()
            )));
        }
        Ok(q.purge())
    }
}
