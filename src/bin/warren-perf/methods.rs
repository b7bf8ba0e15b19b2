//! The synchronous setup methods of the lean client: channel.open, exchange/queue declare, bind,
//! delete, basic.qos, basic.consume, confirm.select, each waiting for its `-ok` (a broker close
//! comes back as an error). Also the `key=value` → field-table conversion for arguments.

use crate::client::{proto, short, Conn, Result};
use amq_protocol::protocol::{basic, channel, confirm, exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

/// `key=value` pairs as a field table: integers become longs, true/false booleans, else strings.
pub fn field_table(pairs: &[(String, String)]) -> Result<FieldTable> {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        let val = if let Ok(n) = v.parse::<i64>() {
            AMQPValue::LongLongInt(n)
        } else if let Ok(b) = v.parse::<bool>() {
            AMQPValue::Boolean(b)
        } else {
            AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
        };
        t.insert(short(k)?, val);
    }
    Ok(t)
}

impl Conn {
    async fn expect(
        &mut self,
        ch: u16,
        m: AMQPClass,
        what: &str,
        ok: fn(&AMQPClass) -> bool,
    ) -> Result<AMQPClass> {
        let reply = self.rpc(ch, m).await?;
        if ok(&reply) {
            Ok(reply)
        } else {
            proto(format!("expected {what}, got {reply:?}"))
        }
    }

    pub async fn open_channel(&mut self, ch: u16) -> Result<()> {
        let m = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
        self.expect(ch, m, "channel.open-ok", |r| {
            matches!(r, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        })
        .await?;
        Ok(())
    }

    pub async fn declare_exchange(
        &mut self,
        ch: u16,
        name: &str,
        kind: &str,
        durable: bool,
    ) -> Result<()> {
        let m = AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: short(name)?,
            kind: short(kind)?,
            passive: false,
            durable,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        }));
        self.expect(ch, m, "exchange.declare-ok", |r| {
            matches!(r, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_)))
        })
        .await?;
        Ok(())
    }

    /// Declare a queue; returns its message count.
    pub async fn declare_queue(
        &mut self,
        ch: u16,
        name: &str,
        durable: bool,
        auto_delete: bool,
        args: FieldTable,
    ) -> Result<u32> {
        let m = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: short(name)?,
            passive: false,
            durable,
            exclusive: false,
            auto_delete,
            nowait: false,
            arguments: args,
        }));
        match self.rpc(ch, m).await? {
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => Ok(ok.message_count),
            other => proto(format!("expected queue.declare-ok, got {other:?}")),
        }
    }

    pub async fn bind_queue(
        &mut self,
        ch: u16,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<()> {
        let m = AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
            queue: short(queue)?,
            exchange: short(exchange)?,
            routing_key: short(key)?,
            nowait: false,
            arguments: FieldTable::default(),
        }));
        self.expect(ch, m, "queue.bind-ok", |r| {
            matches!(r, AMQPClass::Queue(queue::AMQPMethod::BindOk(_)))
        })
        .await?;
        Ok(())
    }

    /// Delete a queue; returns the number of messages it held.
    pub async fn delete_queue(&mut self, ch: u16, name: &str) -> Result<u32> {
        let m = AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
            queue: short(name)?,
            if_unused: false,
            if_empty: false,
            nowait: false,
        }));
        match self.rpc(ch, m).await? {
            AMQPClass::Queue(queue::AMQPMethod::DeleteOk(ok)) => Ok(ok.message_count),
            other => proto(format!("expected queue.delete-ok, got {other:?}")),
        }
    }

    pub async fn qos(&mut self, ch: u16, prefetch: u16) -> Result<()> {
        let m = AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: prefetch,
            global: false,
        }));
        self.expect(ch, m, "basic.qos-ok", |r| {
            matches!(r, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))
        })
        .await?;
        Ok(())
    }

    pub async fn consume(
        &mut self,
        ch: u16,
        queue: &str,
        tag: &str,
        no_ack: bool,
        args: FieldTable,
    ) -> Result<()> {
        let m = AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: short(queue)?,
            consumer_tag: short(tag)?,
            no_local: false,
            no_ack,
            exclusive: false,
            nowait: false,
            arguments: args,
        }));
        self.expect(ch, m, "basic.consume-ok", |r| {
            matches!(r, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))
        })
        .await?;
        Ok(())
    }

    pub async fn confirm_select(&mut self, ch: u16) -> Result<()> {
        let m = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        }));
        self.expect(ch, m, "confirm.select-ok", |r| {
            matches!(r, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))
        })
        .await?;
        Ok(())
    }
}
