//! Who may use which vhost, and the run-time administration of vhosts, users and permissions
//! (the HTTP API's PUT and DELETE). Changes are written to the definitions store before they
//! take effect, as tombstones when they delete something, so that the config file only
//! bootstraps: what the API changed survives a restart.
//!
//! Permissions carry RabbitMQ's configure/write/read patterns: a user with any permission in a
//! vhost may open it (`connection.open`), and each connection checks the patterns where
//! RabbitMQ does (`super::permissions`). Every change bumps a generation counter, which is how
//! open connections learn that their compiled patterns are stale.

use crate::auth::User;
use crate::broker::Broker;
use crate::config::{PermissionConfig, TopicPermissionConfig};
use crate::store::definitions::{Loaded, PermissionDef, UserDef, VhostDef};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why an administrative change was refused; the HTTP layer picks the status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Store(String),
}

/// A user's permissions in one vhost.
#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Permission {
    /// `.*` for all three: what the config file's vhost grants mean.
    pub fn full() -> Permission {
        Permission {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

/// Permissions by (user, vhost), and vhost descriptions.
#[derive(Debug, Default)]
pub struct Access {
    perms: RwLock<BTreeMap<(String, String), Permission>>,
    vhost_meta: RwLock<BTreeMap<String, VhostDef>>,
    /// Topic permissions (`super::topic_permissions`), under the same generation.
    pub(super) topics: super::topic_permissions::TopicPermissions,
    /// Bumped after every change to `perms`; connections compare it with the generation their
    /// compiled patterns came from (one relaxed load per check).
    generation: AtomicU64,
}

impl Access {
    /// Config grants for `vhosts` (full access by a user's `vhosts`, replaced by the config's
    /// `[[permissions]]`), then what the store says (stored entries win).
    pub fn bootstrap(
        users: &[Arc<User>],
        vhosts: &[String],
        configured: &[PermissionConfig],
        topics: &[TopicPermissionConfig],
        loaded: &Loaded,
    ) -> Access {
        let a = Access {
            topics: super::topic_permissions::TopicPermissions::bootstrap(topics, loaded),
            ..Access::default()
        };
        {
            let mut p = a.perms.write();
            for u in users {
                for v in vhosts {
                    if u.can_access_vhost(v) {
                        p.insert((u.name.clone(), v.clone()), Permission::full());
                    }
                }
            }
            for c in configured {
                p.insert(
                    (c.user.clone(), c.vhost.clone()),
                    Permission {
                        configure: c.configure.clone(),
                        write: c.write.clone(),
                        read: c.read.clone(),
                    },
                );
            }
            for d in &loaded.permissions {
                let k = (d.user.clone(), d.vhost.clone());
                if d.deleted {
                    p.remove(&k);
                } else {
                    p.insert(
                        k,
                        Permission {
                            configure: d.configure.clone(),
                            write: d.write.clone(),
                            read: d.read.clone(),
                        },
                    );
                }
            }
        }
        let mut m = a.vhost_meta.write();
        for d in loaded.vhost_defs.iter().filter(|d| !d.deleted) {
            m.insert(d.name.clone(), d.clone());
        }
        drop(m);
        a
    }

    /// The permissions' generation: changes whenever any permission does.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Permissions changed (called after the change is in `perms` or `topics`).
    pub(super) fn bump(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    /// A user's topic permissions in a vhost, by exchange.
    pub fn topic_permissions_of(
        &self,
        user: &str,
        vhost: &str,
    ) -> Vec<(String, super::topic_permissions::TopicPermission)> {
        self.topics.of(user, vhost)
    }

    /// Every topic permission as (user, vhost, exchange, patterns).
    pub fn topic_permissions(
        &self,
    ) -> Vec<(
        String,
        String,
        String,
        super::topic_permissions::TopicPermission,
    )> {
        self.topics.list()
    }

    pub fn permission(&self, user: &str, vhost: &str) -> Option<Permission> {
        self.perms
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
    }

    /// Every permission as (user, vhost, permission), by user then vhost.
    pub fn permissions(&self) -> Vec<(String, String, Permission)> {
        self.perms
            .read()
            .iter()
            .map(|((u, v), p)| (u.clone(), v.clone(), p.clone()))
            .collect()
    }

    /// The description and tags of a vhost (empty for the config's vhosts).
    pub fn vhost_meta(&self, vhost: &str) -> VhostDef {
        self.vhost_meta
            .read()
            .get(vhost)
            .cloned()
            .unwrap_or_else(|| VhostDef {
                name: vhost.to_string(),
                description: if vhost == "/" {
                    "Default virtual host".into()
                } else {
                    String::new()
                },
                ..VhostDef::default()
            })
    }
}

fn store_err(e: impl std::fmt::Display) -> AdminError {
    AdminError::Store(format!("storage failure: {e}"))
}

/// Vhost names RabbitMQ would accept: not empty, at most 255 bytes.
fn check_name(what: &str, name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.len() > 255 {
        return Err(AdminError::BadRequest(format!(
            "{what} name must be 1 to 255 bytes long"
        )));
    }
    Ok(())
}

impl Broker {
    /// May `user` open `vhost`?
    pub fn can_access(&self, user: &User, vhost: &str) -> bool {
        self.access.permission(&user.name, vhost).is_some()
    }

    /// Create a vhost, or update its description; true if it was created.
    pub fn put_vhost(&self, def: VhostDef, creator: Option<&str>) -> Result<bool, AdminError> {
        check_name("vhost", &def.name)?;
        let name = def.name.clone();
        let created = self.vhost(&name).is_none();
        self.persist
            .defs
            .put_vhost_def(&VhostDef {
                deleted: false,
                ..def.clone()
            })
            .map_err(store_err)?;
        self.access.vhost_meta.write().insert(name.clone(), def);
        if created {
            self.add_vhost(&name);
            // Users whose config grants every vhost get this one too, and so does the user who
            // created it through the API (as RabbitMQ's management API does).
            let mut grant: Vec<String> = self
                .users
                .list()
                .iter()
                .filter(|u| u.grants_all_vhosts())
                .map(|u| u.name.clone())
                .collect();
            if let Some(c) = creator {
                if !grant.iter().any(|g| g == c) {
                    self.set_permission(c, &name, Permission::full())?;
                }
            }
            let mut p = self.access.perms.write();
            for u in grant.drain(..) {
                p.entry((u, name.clone())).or_insert_with(Permission::full);
            }
            drop(p);
            self.access.bump();
        }
        Ok(created)
    }

    /// Delete a vhost with everything in it; its connections are closed.
    pub fn delete_vhost(&self, name: &str) -> Result<(), AdminError> {
        let Some(v) = self.vhost(name) else {
            return Err(AdminError::NotFound(format!("vhost '{name}' not found")));
        };
        self.persist
            .defs
            .put_vhost_def(&VhostDef {
                name: name.to_string(),
                deleted: true,
                ..VhostDef::default()
            })
            .map_err(store_err)?;
        self.forget_limits("vhost", name)?;
        // The permissions in the vhost go for good (stored as deleted): a vhost of the same
        // name created later starts with none, also after a restart.
        let users: Vec<String> = self
            .access
            .permissions()
            .into_iter()
            .filter(|(_, v, _)| v == name)
            .map(|(u, _, _)| u)
            .collect();
        for u in users {
            self.clear_permission(&u, name)?;
        }
        let mut topic_users: Vec<String> = self
            .access
            .topic_permissions()
            .into_iter()
            .filter(|(_, v, _, _)| v == name)
            .map(|(u, _, _, _)| u)
            .collect();
        topic_users.sort();
        topic_users.dedup();
        for u in topic_users {
            self.clear_topic_permissions(&u, name, None)?;
        }
        self.remove_vhost(name);
        self.access.vhost_meta.write().remove(name);
        self.access.perms.write().retain(|(_, vn), _| vn != name);
        self.access.topics.remove_vhost(name);
        self.access.bump();
        for c in self.registry.list() {
            if &*c.meta.vhost == name {
                c.close("vhost deleted");
            }
        }
        v.delete_everything();
        Ok(())
    }

    /// Create or replace a user (password hash and tags); true if created.
    pub fn put_user(&self, name: &str, hash: &str, tags: Vec<String>) -> Result<bool, AdminError> {
        check_name("user", name)?;
        let old = self.users.get(name);
        let Some(user) = User::from_hash(name, hash, tags.clone(), old.as_deref()) else {
            return Err(AdminError::BadRequest(
                "password_hash is not a rabbit_password_hashing_sha256 hash".into(),
            ));
        };
        self.persist
            .defs
            .put_user(&UserDef {
                name: name.to_string(),
                password_hash: hash.to_string(),
                tags,
                deleted: false,
            })
            .map_err(store_err)?;
        self.users.put(user);
        Ok(old.is_none())
    }

    /// Delete a user and their permissions; their connections stay (as in RabbitMQ).
    pub fn delete_user(&self, name: &str) -> Result<(), AdminError> {
        if self.users.get(name).is_none() {
            return Err(AdminError::NotFound(format!("user '{name}' not found")));
        }
        self.persist
            .defs
            .put_user(&UserDef {
                name: name.to_string(),
                deleted: true,
                ..UserDef::default()
            })
            .map_err(store_err)?;
        self.users.remove(name);
        self.forget_limits("user", name)?;
        let gone: Vec<String> = self
            .access
            .permissions()
            .into_iter()
            .filter(|(u, _, _)| u == name)
            .map(|(_, v, _)| v)
            .collect();
        for v in gone {
            self.clear_permission(name, &v)?;
        }
        let mut topic_vhosts: Vec<String> = self
            .access
            .topic_permissions()
            .into_iter()
            .filter(|(u, _, _, _)| u == name)
            .map(|(_, v, _, _)| v)
            .collect();
        topic_vhosts.sort();
        topic_vhosts.dedup();
        for v in topic_vhosts {
            self.clear_topic_permissions(name, &v, None)?;
        }
        Ok(())
    }

    /// Set a user's permissions in a vhost (both must exist).
    pub fn set_permission(&self, user: &str, vhost: &str, p: Permission) -> Result<(), AdminError> {
        if self.users.get(user).is_none() || self.vhost(vhost).is_none() {
            // RabbitMQ's reason, word for word.
            return Err(AdminError::BadRequest("vhost_or_user_not_found".into()));
        }
        for pattern in [&p.configure, &p.write, &p.read] {
            super::permissions::validate(pattern).map_err(AdminError::BadRequest)?;
        }
        self.persist
            .defs
            .put_permission(&PermissionDef {
                user: user.to_string(),
                vhost: vhost.to_string(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
                deleted: false,
            })
            .map_err(store_err)?;
        self.access
            .perms
            .write()
            .insert((user.to_string(), vhost.to_string()), p);
        self.access.bump();
        Ok(())
    }

    /// Remove a user's permissions in a vhost.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> Result<(), AdminError> {
        if self.access.permission(user, vhost).is_none() {
            return Err(AdminError::NotFound(format!(
                "no permissions for user '{user}' in vhost '{vhost}'"
            )));
        }
        self.persist
            .defs
            .put_permission(&PermissionDef {
                user: user.to_string(),
                vhost: vhost.to_string(),
                deleted: true,
                ..PermissionDef::default()
            })
            .map_err(store_err)?;
        self.access
            .perms
            .write()
            .remove(&(user.to_string(), vhost.to_string()));
        self.access.bump();
        Ok(())
    }
}
