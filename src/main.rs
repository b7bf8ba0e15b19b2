//! `warren`: the broker's command line.
//!
//! Settings come from, in order of precedence: command-line flags, `WARREN_…` environment
//! variables, the config file (`--config`, else `./config.toml` if present), built-in defaults.

use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::{info, warn};
use warren::config::{Config, ConfigError};

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit code when the broker cannot start (e.g. the port is taken).
const EXIT_START: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "warren",
    version,
    about = "warren: a fast AMQP 0-9-1 message broker, wire-compatible with RabbitMQ clients",
    long_about = "warren: a fast AMQP 0-9-1 message broker, wire-compatible with RabbitMQ clients.\n\n\
        Running `warren` with no subcommand serves, exactly like `warren serve`.\n\
        Settings are taken from, highest precedence first: command-line flags, WARREN_* \
        environment variables, the config file, built-in defaults.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Print a salted password hash for the `password_hash` key of a `[[users]]` entry.
    ///
    /// The format is RabbitMQ's rabbit_password_hashing_sha256, so hashes move between warren
    /// and RabbitMQ definitions unchanged. The password is read from the first line of stdin
    /// unless given as an argument (which leaves it in your shell history).
    HashPassword {
        /// The password to hash; read from stdin when omitted.
        password: Option<String>,
    },
    /// Operate a running broker through its HTTP management API: list queues, exchanges,
    /// connections...; purge and delete; close connections; export and import definitions.
    Ctl(warren::ctl::CtlArgs),
}

#[derive(Args, Debug, Default, Clone)]
struct ServeArgs {
    /// Config file (TOML). Without it, ./config.toml is read if present, else defaults are
    /// used; a file named here must exist. [env: WARREN_CONFIG]
    #[arg(long, value_name = "PATH", env = "WARREN_CONFIG", hide_env = true)]
    config: Option<PathBuf>,

    /// Address the AMQP (and HTTP) listeners bind to: an IP such as 0.0.0.0 (all interfaces),
    /// 127.0.0.1 (this machine only) or ::, or a host name. [env: WARREN_BIND] [config: bind]
    /// [default: 0.0.0.0]
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,

    /// AMQP port clients connect to; 0 picks a free port (logged at start).
    /// [env: WARREN_PORT] [config: port] [default: 5672]
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,

    /// Port of the HTTP management API, Prometheus metrics and dashboard; 0 picks a free port. [env: WARREN_HTTP_PORT] [config: http.port] [default: 15672]
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,

    /// Directory for durable state (created if missing).
    /// [env: WARREN_DATA_DIR] [config: data_dir] [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log filter: a level (off, error, warn, info, debug, trace) or tracing directives such as
    /// "info,warren::connection=debug". [env: WARREN_LOG_LEVEL] [config: log_level]
    /// [default: info]
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

impl ServeArgs {
    /// Applies the flags that were given over `cfg` (the top of the precedence order).
    fn apply(&self, cfg: &mut Config) {
        if let Some(v) = &self.bind {
            cfg.bind = v.clone();
        }
        if let Some(v) = self.port {
            cfg.port = v;
        }
        if let Some(v) = self.http_port {
            cfg.http.port = v;
        }
        if let Some(v) = &self.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Some(v) = &self.log_level {
            cfg.log_level = v.clone();
        }
    }
}

/// Defaults ← file ← environment ← flags, then validated.
fn build_config(args: &ServeArgs) -> Result<Config, ConfigError> {
    let mut cfg = Config::load(args.config.as_deref())?;
    cfg.apply_env()?;
    args.apply(&mut cfg);
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword { password }) => hash_password(password),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Ctl(args)) => warren::ctl::run(args),
        None => serve(&cli.serve),
    }
}

fn hash_password(password: Option<String>) -> ExitCode {
    let password = match password {
        Some(p) => p,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("password (input is echoed; end with Enter):");
            }
            let mut line = String::new();
            if let Err(e) = stdin.lock().read_line(&mut line) {
                eprintln!("warren: cannot read the password from stdin: {e}");
                return ExitCode::from(EXIT_START);
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    println!("{}", warren::auth::hash_password(password.as_bytes()));
    ExitCode::SUCCESS
}

fn serve(args: &ServeArgs) -> ExitCode {
    let cfg = match build_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("warren: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    // validate() has checked the filter, so this only fails on a bug.
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("warren")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    runtime.block_on(run(cfg))
}

async fn run(cfg: Config) -> ExitCode {
    let bind = format!("{}:{}", cfg.bind, cfg.port);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %cfg.data_dir.display(),
        log_level = %cfg.log_level,
        "warren starting"
    );

    // Fatal start-up errors go straight to stderr, not through tracing, so that they show even
    // with log_level=off.

    // Install the signal handlers before listening, so a signal right after start is not lost.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warren: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_START);
        }
    };

    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir) {
        eprintln!(
            "warren: cannot create data dir {}: {e}",
            cfg.data_dir.display()
        );
        return ExitCode::from(EXIT_START);
    }

    let handle = match warren::server::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("warren: cannot listen on {bind}: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    info!("listening on {} (AMQP 0-9-1)", handle.amqp_addr());
    if let Some(a) = handle.tls_addr() {
        info!("listening on {a} (AMQP 0-9-1 over TLS)");
    }

    let sig = signals.next().await;
    info!("received {sig}, shutting down: closing connections with 320 CONNECTION_FORCED");

    tokio::select! {
        _ = handle.shutdown() => {
            info!("shutdown complete");
            ExitCode::SUCCESS
        }
        sig = signals.next() => {
            warn!("received {sig} during shutdown, exiting now");
            ExitCode::from(EXIT_START)
        }
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serving_is_the_default_and_serve_takes_the_same_flags() {
        let a = Cli::try_parse_from(["warren", "--port", "1", "--bind", "127.0.0.1"]).unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.serve.port, Some(1));

        let b =
            Cli::try_parse_from(["warren", "serve", "--port", "2", "--http-port", "0"]).unwrap();
        match b.command {
            Some(Command::Serve(s)) => {
                assert_eq!(s.port, Some(2));
                assert_eq!(s.http_port, Some(0));
            }
            other => panic!("{other:?}"),
        }
        // Flags before the subcommand are ambiguous: rejected.
        assert!(Cli::try_parse_from(["warren", "--port", "1", "serve"]).is_err());
        assert!(Cli::try_parse_from(["warren", "--port", "x"]).is_err());
    }

    #[test]
    fn every_flag_is_explained_in_help() {
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--config",
            "--bind",
            "--port",
            "--http-port",
            "--data-dir",
            "--log-level",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        for var in [
            "WARREN_CONFIG",
            "WARREN_BIND",
            "WARREN_PORT",
            "WARREN_HTTP_PORT",
            "WARREN_DATA_DIR",
            "WARREN_LOG_LEVEL",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }

    #[test]
    fn flags_override_config() {
        let args = ServeArgs {
            port: Some(0),
            http_port: Some(0),
            bind: Some("127.0.0.1".into()),
            data_dir: Some("/tmp/w".into()),
            log_level: Some("debug".into()),
            config: None,
        };
        let mut cfg = Config::default();
        args.apply(&mut cfg);
        assert_eq!(cfg.port, 0);
        assert_eq!(cfg.http.port, 0);
        assert_eq!(cfg.bind, "127.0.0.1");
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/w"));
        assert_eq!(cfg.log_level, "debug");

        // Flags left out keep what the file/env said.
        let mut cfg = Config {
            port: 7000,
            ..Config::default()
        };
        ServeArgs::default().apply(&mut cfg);
        assert_eq!(cfg.port, 7000);
    }
}
