//! `warren ctl`: an operator's command line over the HTTP management API (list, purge,
//! delete, close connections, permissions and limits, export and import definitions), as a
//! table or `--json`.

mod client;
mod table;

use clap::{Args, Subcommand, ValueEnum};
pub use client::{seg, Client, CtlError};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Options shared by every `warren ctl` command.
#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// Base URL of the management API.
    #[arg(long, default_value = "http://127.0.0.1:15672", env = "WARREN_URL")]
    pub url: String,
    /// User name.
    #[arg(long, default_value = "guest", env = "WARREN_USER")]
    pub user: String,
    /// Password.
    #[arg(
        long,
        default_value = "guest",
        env = "WARREN_PASSWORD",
        hide_env_values = true
    )]
    pub password: String,
    /// For an https:// URL: the CA certificate (PEM) that signed the broker's certificate.
    #[arg(long, env = "WARREN_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What can be listed.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Resource {
    Queues,
    Exchanges,
    Connections,
    Channels,
    Consumers,
    Bindings,
    Users,
    Vhosts,
    Permissions,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Queues => "queues",
            Resource::Exchanges => "exchanges",
            Resource::Connections => "connections",
            Resource::Channels => "channels",
            Resource::Consumers => "consumers",
            Resource::Bindings => "bindings",
            Resource::Users => "users",
            Resource::Vhosts => "vhosts",
            Resource::Permissions => "permissions",
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum CtlCommand {
    /// Node totals and message rates.
    Overview,
    /// List queues, exchanges, connections, channels, consumers, bindings, users, vhosts or
    /// permissions.
    List {
        resource: Resource,
        /// Only this vhost (queues, exchanges, connections, channels, consumers, bindings).
        #[arg(long)]
        vhost: Option<String>,
    },
    /// Remove every ready message from a queue.
    PurgeQueue {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Delete a queue.
    DeleteQueue {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
        /// Only if it has no consumers.
        #[arg(long)]
        if_unused: bool,
        /// Only if it holds no messages.
        #[arg(long)]
        if_empty: bool,
    },
    /// Delete an exchange.
    DeleteExchange {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Close a connection (by the name `list connections` shows) with 320 CONNECTION_FORCED.
    CloseConnection {
        name: String,
        #[arg(long, default_value = "Closed via warren ctl")]
        reason: String,
    },
    /// Set a user's configure / write / read patterns in a vhost (RabbitMQ's regular
    /// expressions; "" allows nothing, ".*" everything).
    SetPermissions {
        user: String,
        #[arg(allow_hyphen_values = true)]
        configure: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Remove a user's permissions in a vhost.
    ClearPermissions {
        user: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// List permissions: all, one vhost's (--vhost) or one user's (--user).
    ListPermissions {
        #[arg(long, conflicts_with = "user")]
        vhost: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Set a user's topic permission on a topic exchange: the routing keys they may publish
    /// with (write) and bind with (read), as RabbitMQ's set_topic_permissions.
    SetTopicPermissions {
        user: String,
        exchange: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Remove a user's topic permissions in a vhost: all, or the one on EXCHANGE.
    ClearTopicPermissions {
        user: String,
        exchange: Option<String>,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// List topic permissions: all, one vhost's (--vhost) or one user's (--user).
    ListTopicPermissions {
        #[arg(long, conflicts_with = "user")]
        vhost: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Set a vhost limit: max-connections or max-queues (negative: no limit).
    SetVhostLimit {
        /// max-connections or max-queues
        name: String,
        #[arg(allow_negative_numbers = true)]
        value: i64,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Remove a vhost limit.
    ClearVhostLimit {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Set a user limit: max-connections or max-channels (across all the user's connections).
    SetUserLimit {
        user: String,
        /// max-connections or max-channels
        name: String,
        #[arg(allow_negative_numbers = true)]
        value: i64,
    },
    /// Remove a user limit.
    ClearUserLimit { user: String, name: String },
    /// List vhost and user limits.
    ListLimits,
    /// Write the broker's definitions (RabbitMQ's format) to a file, or stdout.
    Export { file: Option<std::path::PathBuf> },
    /// Load definitions (RabbitMQ's format) from a file, or `-` for stdin.
    Import { file: std::path::PathBuf },
}

/// Run a `warren ctl` command; errors are printed and give exit status 1 (2 for usage).
pub fn run(args: CtlArgs) -> ExitCode {
    match execute(&args) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren ctl: {e}");
            ExitCode::from(if matches!(e, CtlError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}

/// `list-permissions` / `list-topic-permissions`: `resource` ("permissions" or
/// "topic-permissions") of one vhost, of one user, or all of them.
fn list_grants(
    c: &Client,
    json: bool,
    resource: &str,
    vhost: Option<&str>,
    user: Option<&str>,
) -> Result<String, CtlError> {
    let path = match (vhost, user) {
        (Some(v), _) => format!("/api/vhosts/{}/{resource}", seg(v)),
        (None, Some(u)) => format!("/api/users/{}/{resource}", seg(u)),
        (None, None) => format!("/api/{resource}"),
    };
    let list = c.get(&path)?;
    if json {
        return Ok(pretty(&list));
    }
    let rows = list.as_array().cloned().unwrap_or_default();
    Ok(table::render(
        &rows,
        table::columns(&resource.replace('-', "_")),
    ))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Run a command and return what it prints.
pub fn execute(a: &CtlArgs) -> Result<String, CtlError> {
    let c = Client::new(&a.url, &a.user, &a.password, a.cacert.as_deref())?;
    let done = |what: String| -> String {
        if a.json {
            pretty(&serde_json::json!({"ok": true, "done": what}))
        } else {
            format!("{what}\n")
        }
    };
    match &a.command {
        CtlCommand::Overview => {
            let o = c.get("/api/overview")?;
            if a.json {
                return Ok(pretty(&o));
            }
            let ms = &o["message_stats"];
            let mut out = format!(
                "node {}  version {}  uptime {} s\n",
                o["node"].as_str().unwrap_or(""),
                o["product_version"].as_str().unwrap_or(""),
                o["uptime"].as_u64().unwrap_or(0) / 1000
            );
            let t = &o["object_totals"];
            out.push_str(&format!(
                "connections {}  channels {}  queues {}  consumers {}  exchanges {}\n",
                t["connections"], t["channels"], t["queues"], t["consumers"], t["exchanges"]
            ));
            let q = &o["queue_totals"];
            out.push_str(&format!(
                "messages {}  ready {}  unacked {}\n",
                q["messages"], q["messages_ready"], q["messages_unacknowledged"]
            ));
            out.push_str(&format!(
                "publish {} ({}/s)  deliver/get {} ({}/s)  ack {} ({}/s)\n",
                ms["publish"],
                ms["publish_details"]["rate"],
                ms["deliver_get"],
                ms["deliver_get_details"]["rate"],
                ms["ack"],
                ms["ack_details"]["rate"]
            ));
            Ok(out)
        }
        CtlCommand::List { resource, vhost } => {
            let r = resource.name();
            let path = match (resource, vhost) {
                (Resource::Connections | Resource::Channels, Some(v)) => {
                    format!("/api/vhosts/{}/{r}", seg(v))
                }
                (Resource::Users | Resource::Vhosts | Resource::Permissions, Some(_)) => {
                    return Err(CtlError::Usage(format!("--vhost does not apply to {r}")))
                }
                (_, Some(v)) => format!("/api/{r}/{}", seg(v)),
                (_, None) => format!("/api/{r}"),
            };
            let list = c.get(&path)?;
            if a.json {
                return Ok(pretty(&list));
            }
            let rows = list.as_array().cloned().unwrap_or_default();
            Ok(table::render(&rows, table::columns(r)))
        }
        CtlCommand::PurgeQueue { name, vhost } => {
            c.call(
                "DELETE",
                &format!("/api/queues/{}/{}/contents", seg(vhost), seg(name)),
                None,
                &[],
            )?;
            Ok(done(format!("purged queue '{name}' in vhost '{vhost}'")))
        }
        CtlCommand::DeleteQueue {
            name,
            vhost,
            if_unused,
            if_empty,
        } => {
            let mut path = format!("/api/queues/{}/{}", seg(vhost), seg(name));
            let mut q = Vec::new();
            if *if_unused {
                q.push("if-unused=true");
            }
            if *if_empty {
                q.push("if-empty=true");
            }
            if !q.is_empty() {
                path = format!("{path}?{}", q.join("&"));
            }
            c.call("DELETE", &path, None, &[])?;
            Ok(done(format!("deleted queue '{name}' in vhost '{vhost}'")))
        }
        CtlCommand::DeleteExchange { name, vhost } => {
            c.call(
                "DELETE",
                &format!("/api/exchanges/{}/{}", seg(vhost), seg(name)),
                None,
                &[],
            )?;
            Ok(done(format!(
                "deleted exchange '{name}' in vhost '{vhost}'"
            )))
        }
        CtlCommand::CloseConnection { name, reason } => {
            c.call(
                "DELETE",
                &format!("/api/connections/{}", seg(name)),
                None,
                &[("x-reason", reason)],
            )?;
            Ok(done(format!("closed connection '{name}'")))
        }
        CtlCommand::SetPermissions {
            user,
            configure,
            write,
            read,
            vhost,
        } => {
            let body = serde_json::json!({"configure": configure, "write": write, "read": read});
            c.call(
                "PUT",
                &format!("/api/permissions/{}/{}", seg(vhost), seg(user)),
                Some(&body),
                &[],
            )?;
            Ok(done(format!(
                "set permissions of user '{user}' in vhost '{vhost}'"
            )))
        }
        CtlCommand::ClearPermissions { user, vhost } => {
            c.call(
                "DELETE",
                &format!("/api/permissions/{}/{}", seg(vhost), seg(user)),
                None,
                &[],
            )?;
            Ok(done(format!(
                "cleared permissions of user '{user}' in vhost '{vhost}'"
            )))
        }
        CtlCommand::ListPermissions { vhost, user } => {
            list_grants(&c, a.json, "permissions", vhost.as_deref(), user.as_deref())
        }
        CtlCommand::SetTopicPermissions {
            user,
            exchange,
            write,
            read,
            vhost,
        } => {
            let body = serde_json::json!({"exchange": exchange, "write": write, "read": read});
            c.call(
                "PUT",
                &format!("/api/topic-permissions/{}/{}", seg(vhost), seg(user)),
                Some(&body),
                &[],
            )?;
            Ok(done(format!(
                "set topic permissions of user '{user}' on exchange '{exchange}' in vhost '{vhost}'"
            )))
        }
        CtlCommand::ClearTopicPermissions {
            user,
            exchange,
            vhost,
        } => {
            let mut path = format!("/api/topic-permissions/{}/{}", seg(vhost), seg(user));
            if let Some(x) = exchange {
                path.push_str(&format!("?exchange={}", seg(x)));
            }
            c.call("DELETE", &path, None, &[])?;
            Ok(done(format!(
                "cleared topic permissions of user '{user}' in vhost '{vhost}'"
            )))
        }
        CtlCommand::ListTopicPermissions { vhost, user } => list_grants(
            &c,
            a.json,
            "topic-permissions",
            vhost.as_deref(),
            user.as_deref(),
        ),
        CtlCommand::SetVhostLimit { name, value, vhost } => {
            c.call(
                "PUT",
                &format!("/api/vhost-limits/{}/{}", seg(vhost), seg(name)),
                Some(&serde_json::json!({ "value": value })),
                &[],
            )?;
            Ok(done(format!("set {name} = {value} on vhost '{vhost}'")))
        }
        CtlCommand::ClearVhostLimit { name, vhost } => {
            c.call(
                "DELETE",
                &format!("/api/vhost-limits/{}/{}", seg(vhost), seg(name)),
                None,
                &[],
            )?;
            Ok(done(format!("cleared {name} on vhost '{vhost}'")))
        }
        CtlCommand::SetUserLimit { user, name, value } => {
            c.call(
                "PUT",
                &format!("/api/user-limits/{}/{}", seg(user), seg(name)),
                Some(&serde_json::json!({ "value": value })),
                &[],
            )?;
            Ok(done(format!("set {name} = {value} on user '{user}'")))
        }
        CtlCommand::ClearUserLimit { user, name } => {
            c.call(
                "DELETE",
                &format!("/api/user-limits/{}/{}", seg(user), seg(name)),
                None,
                &[],
            )?;
            Ok(done(format!("cleared {name} on user '{user}'")))
        }
        CtlCommand::ListLimits => {
            let vhosts = c.get("/api/vhost-limits")?;
            let users = c.get("/api/user-limits")?;
            if a.json {
                return Ok(pretty(
                    &serde_json::json!({"vhosts": vhosts, "users": users}),
                ));
            }
            Ok(table::render(
                &table::limit_rows(&vhosts, &users),
                table::columns("limits"),
            ))
        }
        CtlCommand::Export { file } => {
            let defs = c.get("/api/definitions")?;
            let text = pretty(&defs);
            match file {
                Some(f) => {
                    std::fs::write(f, &text).map_err(|e| {
                        CtlError::Usage(format!("cannot write {}: {e}", f.display()))
                    })?;
                    Ok(done(format!("definitions written to {}", f.display())))
                }
                None => Ok(text),
            }
        }
        CtlCommand::Import { file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| CtlError::Usage(format!("cannot read stdin: {e}")))?;
                s
            } else {
                std::fs::read_to_string(file)
                    .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", file.display())))?
            };
            let defs: Value = serde_json::from_str(&text)
                .map_err(|e| CtlError::Usage(format!("{} is not JSON: {e}", file.display())))?;
            c.call("POST", "/api/definitions", Some(&defs), &[])?;
            Ok(done(format!(
                "definitions imported from {}",
                file.display()
            )))
        }
    }
}
