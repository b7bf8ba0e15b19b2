//! Durable definitions: exchanges, queues, bindings and vhosts, kept in one redb database.
//!
//! Every mutating call is one redb write transaction committed with redb's default
//! `Durability::Immediate`, so the change is fsynced when the call returns: the broker calls it
//! before sending `declare-ok`/`bind-ok`/`delete-ok`, and a crash after the `*-ok` cannot lose it.
//! Calls block for one fdatasync (0.2–0.6 ms per commit measured here, release build); from
//! async code run them on a blocking thread (`spawn_blocking`).
//! `Definitions` is `Send + Sync`: redb admits one write transaction at a time and queues the rest,
//! and reads see a consistent snapshot without waiting for writers.
//!
//! Layout (all values are serde_json, keys are length-prefixed parts, see `key()`):
//! - `exchanges`: (vhost, name) → [`ExchangeDef`]; `queues`: (vhost, name) → [`QueueDef`]
//! - `bindings`: (vhost, source, kind, dest, routing key, arguments) → [`BindingDef`]
//! - `bindings_by_dest`: (vhost, kind, dest, source, routing key, arguments) → `bindings` key, a
//!   reverse index so deleting a queue or exchange finds the bindings to it without a full scan
//! - `vhosts`: name → (); `meta`: schema version and the next queue id.
//! - `policies`: (vhost, name) → the policy as JSON (its shape is the broker's business; the
//!   table was added later: opening an older file creates it, the schema version is unchanged).
//! - `vhost_defs`: name → [`VhostDef`]; `users`: name → [`UserDef`]; `permissions`: (user,
//!   vhost) → [`PermissionDef`]: what the HTTP API changed at run time. Each may be a tombstone
//!   (`deleted: true`), so that deleting a vhost, user or permission that the config file
//!   bootstraps stays deleted across restarts. (Tables added later than schema 1: opening an
//!   older file just creates them.)
//! - `limits`: (scope `vhost`/`user`, name) → [`LimitsDef`]: RabbitMQ's vhost and user limits;
//!   a record with no limits left is removed.
//! - `topic_permissions`: (user, vhost, exchange) → [`TopicPermissionDef`], tombstones as for
//!   `permissions`.

use std::path::{Path, PathBuf};

use amq_protocol::types::FieldTable;
use redb::{CommitError, DatabaseError, StorageError, TableError, TransactionError};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A durable exchange as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub vhost: String,
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// A durable queue as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// Stable numeric id from [`Definitions::next_queue_id`]; names the queue's message-log
    /// directory, so a queue deleted and re-declared under the same name never sees old segments.
    pub id: u64,
}

/// What a binding points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DestKind {
    Queue,
    Exchange,
}

impl DestKind {
    /// The key part for this kind; one byte is enough and keeps it out of any name's way.
    fn tag(&self) -> &'static [u8] {
        match self {
            DestKind::Queue => b"q",
            DestKind::Exchange => b"e",
        }
    }
}

/// A binding; all six fields together are its identity (AMQP unbind matches arguments too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub vhost: String,
    pub source: String,
    pub dest_kind: DestKind,
    pub dest: String,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// A stored policy: its key and its JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub vhost: String,
    pub name: String,
    pub value: serde_json::Value,
}

/// A vhost created (or deleted: `deleted`) through the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VhostDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub default_queue_type: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// A user created or changed (or deleted: `deleted`) through the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserDef {
    pub name: String,
    /// RabbitMQ's `rabbit_password_hashing_sha256` hash (base64).
    #[serde(default)]
    pub password_hash: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// A user's permissions in a vhost (or their removal: `deleted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    #[serde(default)]
    pub configure: String,
    #[serde(default)]
    pub write: String,
    #[serde(default)]
    pub read: String,
    #[serde(default)]
    pub deleted: bool,
}

/// A user's topic permission on one exchange of a vhost (or its removal: `deleted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    #[serde(default)]
    pub write: String,
    #[serde(default)]
    pub read: String,
    #[serde(default)]
    pub deleted: bool,
}

/// The limits of one vhost (`scope` "vhost") or user (`scope` "user"), e.g. `max-connections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LimitsDef {
    pub scope: String,
    pub name: String,
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, i64>,
}

/// Everything in the store, read from one snapshot; each list is in key order (shorter names
/// first, not alphabetical), so callers should not rely on any order.
#[derive(Debug, Default)]
pub struct Loaded {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    pub vhosts: Vec<String>,
    pub policies: Vec<PolicyRow>,
    pub vhost_defs: Vec<VhostDef>,
    pub users: Vec<UserDef>,
    pub permissions: Vec<PermissionDef>,
    pub topic_permissions: Vec<TopicPermissionDef>,
    pub limits: Vec<LimitsDef>,
}

/// A failed store operation, naming the database file and the operation; the broker turns it
/// into 541 INTERNAL_ERROR.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error("definitions store {}: {op}: {source}", path.display())]
    Storage {
        path: PathBuf,
        op: &'static str,
        // Boxed: redb::Error is over 100 bytes and would bloat every Result of this module.
        // (A field named `source` is the error source for thiserror.)
        source: Box<redb::Error>,
    },
    #[error("definitions store {}: {op}: cannot store {what}: {source}", path.display())]
    Encode {
        path: PathBuf,
        op: &'static str,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("definitions store {}: {op}: corrupt {what} record: {source}", path.display())]
    Decode {
        path: PathBuf,
        op: &'static str,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("definitions store {}: schema {found}, expected {SCHEMA_VERSION}", path.display())]
    Schema { path: PathBuf, found: u64 },
}

const EXCHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("exchanges");
const QUEUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queues");
const BINDINGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bindings");
const BINDINGS_BY_DEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bindings_by_dest");
const VHOSTS: TableDefinition<&str, ()> = TableDefinition::new("vhosts");
const POLICIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("policies");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VHOST_DEFS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vhost_defs");
const USERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("users");
const PERMISSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("permissions");
const LIMITS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("limits");
const TOPIC_PERMISSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("topic_permissions");
/// Bumped when the layout above changes, so an old build refuses a newer file instead of
/// misreading it.
const SCHEMA_VERSION: u64 = 1;
const META_SCHEMA: &str = "schema_version";
const META_NEXT_QUEUE_ID: &str = "next_queue_id";

/// A failure before context is attached; `?` converts every redb error type into it.
enum Raw {
    Redb(Box<redb::Error>),
    Encode(&'static str, serde_json::Error),
    Decode(&'static str, serde_json::Error),
    Schema(u64),
}

macro_rules! raw_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Raw {
            fn from(e: $t) -> Raw {
                Raw::Redb(Box::new(e.into()))
            }
        }
    )*};
}
raw_from_redb!(
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError
);

impl Raw {
    fn context(self, path: &Path, op: &'static str) -> DefinitionsError {
        let path = path.to_path_buf();
        match self {
            Raw::Redb(source) => DefinitionsError::Storage { path, op, source },
            Raw::Encode(what, source) => DefinitionsError::Encode {
                path,
                op,
                what,
                source,
            },
            Raw::Decode(what, source) => DefinitionsError::Decode {
                path,
                op,
                what,
                source,
            },
            Raw::Schema(found) => DefinitionsError::Schema { path, found },
        }
    }
}

/// Encodes the parts of a composite key, each as a big-endian u64 length and its bytes. This
/// is a prefix code, so two different part lists never give the same key whatever bytes the
/// names hold ('\0', '/', anything), and the key of the first n parts is a byte prefix of
/// exactly the keys that share those parts, which is what the prefix scans below rely on.
fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
    for p in parts {
        k.extend_from_slice(&(p.len() as u64).to_be_bytes());
        k.extend_from_slice(p);
    }
    k
}

/// serde_json bytes for `v`, refused unless they decode and re-encode to the same bytes. JSON
/// has no NaN or infinity (serde_json writes `null`, which then fails to decode), so a float
/// argument like that would otherwise be stored fine and then stop the broker from starting;
/// and binding keys embed the encoded arguments, so the encoding must survive a reload intact.
fn encode<T: Serialize + DeserializeOwned>(what: &'static str, v: &T) -> Result<Vec<u8>, Raw> {
    let bytes = serde_json::to_vec(v).map_err(|e| Raw::Encode(what, e))?;
    let back: T = serde_json::from_slice(&bytes).map_err(|e| Raw::Encode(what, e))?;
    let again = serde_json::to_vec(&back).map_err(|e| Raw::Encode(what, e))?;
    if again != bytes {
        let msg = "value does not survive a JSON round trip";
        return Err(Raw::Encode(what, serde::de::Error::custom(msg)));
    }
    Ok(bytes)
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, Raw> {
    serde_json::from_slice(bytes).map_err(|e| Raw::Decode(what, e))
}

fn name_key(vhost: &str, name: &str) -> Vec<u8> {
    key(&[vhost.as_bytes(), name.as_bytes()])
}

/// (forward key, reverse-index key) of a binding.
fn binding_keys(b: &BindingDef) -> Result<(Vec<u8>, Vec<u8>), Raw> {
    let args = encode("binding arguments", &b.arguments)?;
    let (v, s, k) = (b.vhost.as_bytes(), b.source.as_bytes(), b.dest_kind.tag());
    let (d, rk) = (b.dest.as_bytes(), b.routing_key.as_bytes());
    Ok((key(&[v, s, k, d, rk, &args]), key(&[v, k, d, s, rk, &args])))
}

type KvTable<'t> = Table<'t, &'static [u8], &'static [u8]>;
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys and values of `table` whose key starts with `prefix`. Collected first because redb's
/// range borrows the table, and the callers remove what they found.
fn with_prefix(table: &KvTable, prefix: &[u8]) -> Result<Entries, Raw> {
    let mut found = Vec::new();
    for entry in table.range(prefix..)? {
        let (k, v) = entry?;
        if !k.value().starts_with(prefix) {
            break; // keys are sorted: past the prefix there is nothing more to find
        }
        found.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(found)
}

/// Removes every binding whose source is exchange `source`, from both binding tables.
fn unbind_source(txn: &WriteTransaction, vhost: &str, source: &str) -> Result<(), Raw> {
    let mut fwd = txn.open_table(BINDINGS)?;
    let mut rev = txn.open_table(BINDINGS_BY_DEST)?;
    for (fwd_key, value) in with_prefix(&fwd, &name_key(vhost, source))? {
        let (_, rev_key) = binding_keys(&decode::<BindingDef>("binding", &value)?)?;
        fwd.remove(fwd_key.as_slice())?;
        rev.remove(rev_key.as_slice())?;
    }
    Ok(())
}

/// Removes every binding to `dest`, found through the reverse index.
fn unbind_dest(txn: &WriteTransaction, vhost: &str, kind: DestKind, dest: &str) -> Result<(), Raw> {
    let mut fwd = txn.open_table(BINDINGS)?;
    let mut rev = txn.open_table(BINDINGS_BY_DEST)?;
    let prefix = key(&[vhost.as_bytes(), kind.tag(), dest.as_bytes()]);
    for (rev_key, fwd_key) in with_prefix(&rev, &prefix)? {
        rev.remove(rev_key.as_slice())?;
        fwd.remove(fwd_key.as_slice())?;
    }
    Ok(())
}

/// Every value of `table`, decoded, in key order.
fn read_all<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    what: &'static str,
) -> Result<Vec<T>, Raw> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        out.push(decode(what, entry?.1.value())?);
    }
    Ok(out)
}

/// The durable definitions store; see the module doc.
pub struct Definitions {
    db: Database,
    path: PathBuf,
}

impl Definitions {
    /// Opens the database at `path`, creating the file and its tables if missing (the directory
    /// must exist). Fails if the file is not a redb database, is open elsewhere, or was written
    /// by a newer schema.
    pub fn open(path: &Path) -> Result<Definitions, DefinitionsError> {
        let open = || -> Result<Database, Raw> {
            let db = Database::create(path)?;
            let txn = db.begin_write()?;
            {
                // Opening a table in a write transaction creates it; after this, readers can
                // open every table without a "does not exist" case.
                for t in [
                    EXCHANGES,
                    QUEUES,
                    BINDINGS,
                    BINDINGS_BY_DEST,
                    POLICIES,
                    VHOST_DEFS,
                    USERS,
                    PERMISSIONS,
                    LIMITS,
                    TOPIC_PERMISSIONS,
                ] {
                    txn.open_table(t)?;
                }
                txn.open_table(VHOSTS)?;
                let mut meta = txn.open_table(META)?;
                let found = meta.get(META_SCHEMA)?.map(|g| g.value());
                match found {
                    None => {
                        meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                    }
                    Some(SCHEMA_VERSION) => {}
                    Some(other) => return Err(Raw::Schema(other)),
                }
            }
            txn.commit()?;
            Ok(db)
        };
        let db = open().map_err(|e| e.context(path, "open"))?;
        Ok(Definitions {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Runs `f` in one write transaction and commits it (fsync). On error the transaction is
    /// dropped, which aborts it, so a cascade is all or nothing.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, Raw>,
    ) -> Result<T, DefinitionsError> {
        let run = || -> Result<T, Raw> {
            let txn = self.db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        run().map_err(|e| e.context(&self.path, op))
    }

    /// Stores (or replaces) a durable exchange.
    pub fn put_exchange(&self, d: &ExchangeDef) -> Result<(), DefinitionsError> {
        self.write("put_exchange", |txn| {
            let value = encode("exchange", d)?;
            let mut t = txn.open_table(EXCHANGES)?;
            t.insert(name_key(&d.vhost, &d.name).as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// Deletes an exchange and every binding from or to it, in one transaction.
    pub fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), DefinitionsError> {
        self.write("delete_exchange", |txn| {
            txn.open_table(EXCHANGES)?
                .remove(name_key(vhost, name).as_slice())?;
            unbind_source(txn, vhost, name)?;
            unbind_dest(txn, vhost, DestKind::Exchange, name)
        })
    }

    /// Stores (or replaces) a durable queue. Also lifts the id counter above `d.id`, so that an
    /// id that did not come from [`Self::next_queue_id`] is still never handed out again.
    pub fn put_queue(&self, d: &QueueDef) -> Result<(), DefinitionsError> {
        self.write("put_queue", |txn| {
            let value = encode("queue", d)?;
            let mut t = txn.open_table(QUEUES)?;
            t.insert(name_key(&d.vhost, &d.name).as_slice(), value.as_slice())?;
            let mut meta = txn.open_table(META)?;
            let next = meta.get(META_NEXT_QUEUE_ID)?.map_or(1, |g| g.value());
            if d.id >= next {
                meta.insert(META_NEXT_QUEUE_ID, d.id.saturating_add(1))?;
            }
            Ok(())
        })
    }

    /// Deletes a queue and every binding to it, in one transaction.
    pub fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), DefinitionsError> {
        self.write("delete_queue", |txn| {
            txn.open_table(QUEUES)?
                .remove(name_key(vhost, name).as_slice())?;
            unbind_dest(txn, vhost, DestKind::Queue, name)
        })
    }

    /// Stores a binding; storing the same binding twice is a no-op.
    pub fn put_binding(&self, b: &BindingDef) -> Result<(), DefinitionsError> {
        self.write("put_binding", |txn| {
            let value = encode("binding", b)?;
            let (fwd_key, rev_key) = binding_keys(b)?;
            let mut fwd = txn.open_table(BINDINGS)?;
            fwd.insert(fwd_key.as_slice(), value.as_slice())?;
            let mut rev = txn.open_table(BINDINGS_BY_DEST)?;
            rev.insert(rev_key.as_slice(), fwd_key.as_slice())?;
            Ok(())
        })
    }

    /// Deletes the binding equal to `b` in all six fields.
    pub fn delete_binding(&self, b: &BindingDef) -> Result<(), DefinitionsError> {
        self.write("delete_binding", |txn| {
            let (fwd_key, rev_key) = binding_keys(b)?;
            txn.open_table(BINDINGS)?.remove(fwd_key.as_slice())?;
            txn.open_table(BINDINGS_BY_DEST)?
                .remove(rev_key.as_slice())?;
            Ok(())
        })
    }

    /// Stores (or replaces) a policy.
    pub fn put_policy(&self, p: &PolicyRow) -> Result<(), DefinitionsError> {
        self.write("put_policy", |txn| {
            let value = encode("policy", p)?;
            let mut t = txn.open_table(POLICIES)?;
            t.insert(name_key(&p.vhost, &p.name).as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// Deletes a policy (no-op if absent).
    pub fn delete_policy(&self, vhost: &str, name: &str) -> Result<(), DefinitionsError> {
        self.write("delete_policy", |txn| {
            txn.open_table(POLICIES)?
                .remove(name_key(vhost, name).as_slice())?;
            Ok(())
        })
    }

    /// Records a vhost.
    pub fn put_vhost(&self, name: &str) -> Result<(), DefinitionsError> {
        self.write("put_vhost", |txn| {
            txn.open_table(VHOSTS)?.insert(name, ())?;
            Ok(())
        })
    }

    /// Stores a vhost's definition (or its tombstone).
    pub fn put_vhost_def(&self, d: &VhostDef) -> Result<(), DefinitionsError> {
        self.write("put_vhost_def", |txn| {
            let value = encode("vhost", d)?;
            txn.open_table(VHOST_DEFS)?
                .insert(key(&[d.name.as_bytes()]).as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// Stores a user (or its tombstone).
    pub fn put_user(&self, d: &UserDef) -> Result<(), DefinitionsError> {
        self.write("put_user", |txn| {
            let value = encode("user", d)?;
            txn.open_table(USERS)?
                .insert(key(&[d.name.as_bytes()]).as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// Stores a permission (or its tombstone).
    pub fn put_permission(&self, d: &PermissionDef) -> Result<(), DefinitionsError> {
        self.write("put_permission", |txn| {
            let value = encode("permission", d)?;
            let k = key(&[d.user.as_bytes(), d.vhost.as_bytes()]);
            txn.open_table(PERMISSIONS)?
                .insert(k.as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// Stores a topic permission (or its tombstone).
    pub fn put_topic_permission(&self, d: &TopicPermissionDef) -> Result<(), DefinitionsError> {
        self.write("put_topic_permission", |txn| {
            let value = encode("topic permission", d)?;
            let k = key(&[d.user.as_bytes(), d.vhost.as_bytes(), d.exchange.as_bytes()]);
            txn.open_table(TOPIC_PERMISSIONS)?
                .insert(k.as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// Stores the limits of a vhost or user; with none left, removes the record.
    pub fn put_limits(&self, d: &LimitsDef) -> Result<(), DefinitionsError> {
        self.write("put_limits", |txn| {
            let k = key(&[d.scope.as_bytes(), d.name.as_bytes()]);
            let mut t = txn.open_table(LIMITS)?;
            if d.limits.is_empty() {
                t.remove(k.as_slice())?;
            } else {
                let value = encode("limits", d)?;
                t.insert(k.as_slice(), value.as_slice())?;
            }
            Ok(())
        })
    }

    /// Hands out the next queue id (1, 2, …), committed before it is returned, so no id is ever
    /// handed out twice, even across a crash; an id taken by a declare that then failed is
    /// simply skipped.
    pub fn next_queue_id(&self) -> Result<u64, DefinitionsError> {
        self.write("next_queue_id", |txn| {
            let mut meta = txn.open_table(META)?;
            let id = meta.get(META_NEXT_QUEUE_ID)?.map_or(1, |g| g.value());
            // 2^64 ids cannot be used up; saturating only keeps the arithmetic panic-free.
            meta.insert(META_NEXT_QUEUE_ID, id.saturating_add(1))?;
            Ok(id)
        })
    }

    /// Reads everything from one consistent snapshot.
    pub fn load(&self) -> Result<Loaded, DefinitionsError> {
        let read = || -> Result<Loaded, Raw> {
            let txn = self.db.begin_read()?;
            let mut vhosts = Vec::new();
            for entry in txn.open_table(VHOSTS)?.iter()? {
                vhosts.push(entry?.0.value().to_string());
            }
            Ok(Loaded {
                exchanges: read_all(&txn.open_table(EXCHANGES)?, "exchange")?,
                queues: read_all(&txn.open_table(QUEUES)?, "queue")?,
                bindings: read_all(&txn.open_table(BINDINGS)?, "binding")?,
                vhosts,
                policies: read_all(&txn.open_table(POLICIES)?, "policy")?,
                vhost_defs: read_all(&txn.open_table(VHOST_DEFS)?, "vhost")?,
                users: read_all(&txn.open_table(USERS)?, "user")?,
                permissions: read_all(&txn.open_table(PERMISSIONS)?, "permission")?,
                topic_permissions: read_all(
                    &txn.open_table(TOPIC_PERMISSIONS)?,
                    "topic permission",
                )?,
                limits: read_all(&txn.open_table(LIMITS)?, "limits")?,
            })
        };
        read().map_err(|e| e.context(&self.path, "load"))
    }
}

#[cfg(test)]
#[path = "definitions_tests.rs"]
mod tests;
