//! How deliveries end: acks and nacks settled, messages requeued (to the front, in their
//! original order, marked redelivered) or rejected (dead-lettered or dropped).

use super::*;

impl Queue {
    /// Settle `n` deliveries: acked (manual ack) or written to the socket (no-ack). Returns credit
    /// to the consumer and dispatches more.
    /// `seqs`/`locs` name the settled messages that have log records.
    pub fn settle(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        n: u32,
        manual: bool,
        seqs: &[u64],
        locs: &[Location],
        max_seq: Option<u64>,
    ) {
        if let (Some(s), Some(c)) = (&self.stream, consumer_id) {
            s.settle(c, n, manual.then_some(seqs), max_seq.filter(|_| manual));
            return;
        }
        // A deleted queue's log is gone: writing acks would only fail (and log an error).
        if let Some(log) = self.log.as_ref().filter(|_| !self.is_deleted()) {
            log.settle(seqs, locs);
        }
        let mut st = self.state.lock();
        if manual {
            st.unacked = st.unacked.saturating_sub(u64::from(n));
            self.stats.add(Stat::Ack, u64::from(n));
        }
        if let Some(id) = consumer_id {
            if let Some(c) = st.consumers.iter_mut().find(|c| c.id == id) {
                c.outstanding = c.outstanding.saturating_sub(n);
            }
        }
        if !st.is_empty() {
            st.dispatch(self);
        }
        self.unlock(st);
    }

    /// Put unacked messages back (nack/reject with requeue, channel or connection closed, consumer
    /// gone), in their original order, marked redelivered.
    pub fn requeue(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        msgs: impl IntoIterator<Item = QueuedMessage>,
    ) {
        self.requeue_counted(consumer_id, msgs, true);
    }

    /// A delivery that never reached its consumer (consumer, channel or connection gone). It
    /// does not count as a return towards a delivery limit.
    pub fn give_back(self: &Arc<Self>, d: Delivery) {
        self.requeue_counted(Some(d.consumer_id), [d.message], !d.no_ack);
    }

    /// `unacked`: whether these messages were counted as unacked (no-ack deliveries are not);
    /// only those count as returns for a delivery limit.
    fn requeue_counted(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        msgs: impl IntoIterator<Item = QueuedMessage>,
        unacked: bool,
    ) {
        if let Some(s) = &self.stream {
            // A stream never takes messages back: only the consumer's credit returns.
            let n = u32::try_from(msgs.into_iter().count()).unwrap_or(u32::MAX);
            if let Some(c) = consumer_id {
                s.settle(c, n, None, None);
            }
            return;
        }
        let mut st = self.state.lock();
        let features = st.features.clone().filter(|f| unacked && f.count_returns);
        let returns = features.as_deref();
        let mut n = 0u32;
        for m in msgs {
            n += 1;
            if self.is_deleted() {
                continue;
            }
            match returns {
                Some(f) => st.returned(self, f, m),
                None => st.requeue(m),
            }
        }
        if unacked {
            st.unacked = st.unacked.saturating_sub(u64::from(n));
        }
        if let Some(id) = consumer_id {
            if let Some(c) = st.consumers.iter_mut().find(|c| c.id == id) {
                c.outstanding = c.outstanding.saturating_sub(n);
            }
        }
        st.dispatch(self);
        self.unlock(st);
    }

    /// basic.reject / basic.nack without requeue on a queue with a dead-letter exchange: the
    /// messages are settled like acks and go to the dead-letter exchange (reason `rejected`).
    pub fn reject(self: &Arc<Self>, consumer_id: Option<u64>, msgs: Vec<QueuedMessage>) {
        let n = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
        let mut st = self.state.lock();
        if !self.is_deleted() {
            for m in msgs {
                st.discard(self, m, Reason::Rejected);
            }
        }
        st.unacked = st.unacked.saturating_sub(u64::from(n));
        if let Some(id) = consumer_id {
            if let Some(c) = st.consumers.iter_mut().find(|c| c.id == id) {
                c.outstanding = c.outstanding.saturating_sub(n);
            }
        }
        if !st.is_empty() {
            st.dispatch(self);
        }
        self.unlock(st);
    }
}
