//! The `silt` binary. With no subcommand it runs a broker (`silt serve`).

use clap::{Args, Parser, Subcommand};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::Serialize;
use silt_broker::config::Config;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Silt: a Kafka-compatible streaming broker whose data lives in object storage.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (the default). Settings: defaults < silt.toml < SILT_* env < flags.
    Serve(ServeArgs),
}

/// Flags override `silt.toml` and `SILT_*` environment variables.
#[derive(Args, Serialize, Default, Clone)]
struct ServeArgs {
    /// Configuration file (default: ./silt.toml if present).
    #[arg(long, global = true)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Kafka listener address [env: SILT_LISTEN] [default: 127.0.0.1:9092]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// host:port given to clients [env: SILT_ADVERTISED_LISTENER] [default: the listen address]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertised_listener: Option<String>,
    /// Local data: WAL, hot segments, metadata [env: SILT_DATA_DIR] [default: ./silt-data]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Broker id [env: SILT_NODE_ID] [default: 1]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<i32>,
    /// Metadata store: `embedded` [env: SILT_METADATA] [default: embedded]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    /// Object store URL: file:///path or memory:// [env: SILT_OBJECT_STORE] [default: file://<data-dir>/objects]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    object_store: Option<String>,
    /// Admin HTTP (/healthz, /readyz) [env: SILT_ADMIN_LISTEN] [default: 127.0.0.1:9095]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<String>,
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match &args.config {
        Some(path) => {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            figment = figment.merge(Toml::file(path));
        }
        None => figment = figment.merge(Toml::file("silt.toml")),
    }
    // Only SILT_* variables naming a setting are configuration; others (SILT_BIN in tests, say)
    // are left alone rather than refused.
    let known: Vec<String> = match serde_json::to_value(Config::default())? {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let env = Env::prefixed("SILT_").split("__").filter(move |key| {
        // Depending on the order of figment's maps, nesting shows as `.` or still as `__`.
        let key = key.as_str().to_ascii_lowercase();
        let key = key.strip_prefix("silt_").unwrap_or(&key);
        known.iter().any(|k| {
            key == k || key.starts_with(&format!("{k}.")) || key.starts_with(&format!("{k}__"))
        })
    });
    let config: Config = figment
        .merge(env)
        .merge(Serialized::defaults(args))
        .extract()?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = load_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("silt")
        .build()?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let signal = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            tracing::info!("shutting down");
            signal.cancel();
        });
        silt_broker::serve(config, cancel).await
    })
}
