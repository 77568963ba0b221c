//! The `silt` binary. With no subcommand it runs a broker (`silt serve`).

use clap::{Args, Parser, Subcommand};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use opentelemetry::trace::TracerProvider as _;
use serde::Serialize;
use silt_broker::config::Config;
use silt_broker::telemetry;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

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
    /// List, describe, create, delete and alter topics on a running cluster.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// List consumer groups; describe one with its members, committed offsets and lag.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Brokers, controller and the partitions each leads.
    Cluster {
        #[command(flatten)]
        target: Target,
    },
    /// Read a topic's committed records straight from the bucket (no broker, no metadata
    /// store): one JSON object per line, up to the newest manifest's end. S3 settings come from
    /// AWS_* variables (AWS_ENDPOINT and AWS_ALLOW_HTTP=true for MinIO).
    Read(ReadArgs),
    /// Load the configuration `silt serve` would run with (file, SILT_* environment, flags,
    /// ${env:NAME} references), validate it and print it as JSON with secrets redacted; exit
    /// non-zero with the reason if it is invalid. Certificate files are not read.
    CheckConfig(ServeArgs),
    /// Ask a broker's admin port whether it is ready (/readyz) or, with --live, alive
    /// (/healthz); exit 0 if so. For container health checks (the image has no curl).
    Health {
        /// The broker's admin address
        #[arg(long, default_value = "127.0.0.1:9095")]
        admin: String,
        /// Liveness (/healthz) instead of readiness (/readyz)
        #[arg(long)]
        live: bool,
    },
}

#[derive(Args)]
struct ReadArgs {
    /// The bucket: s3://bucket/prefix, file:///path or a broker's --object-store URL
    url: String,
    #[arg(long)]
    topic: String,
    /// One partition (default: all, one after another)
    #[arg(long)]
    partition: Option<i32>,
    /// First offset to print
    #[arg(long, conflicts_with = "from_time")]
    from_offset: Option<i64>,
    /// First record with a timestamp at or after this (milliseconds since the epoch)
    #[arg(long)]
    from_time: Option<i64>,
    /// Stop before this offset
    #[arg(long)]
    to_offset: Option<i64>,
    /// How to print keys, values and headers that are not UTF-8
    #[arg(long, value_enum, default_value = "lossy")]
    binary: silt_broker::cli::read::Binary,
}

/// Where the operator commands connect, and how they print.
#[derive(Args)]
struct Target {
    /// Brokers to ask (host:port[,host:port])
    #[arg(
        long,
        global = true,
        env = "SILT_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Every topic with its partition count.
    List,
    /// Partitions (leader, epoch, start and end offsets) and config overrides of one topic.
    Describe { topic: String },
    /// Create a topic.
    Create {
        topic: String,
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// Topic config, key=value (repeatable)
        #[arg(long = "config")]
        configs: Vec<String>,
    },
    /// Delete a topic.
    Delete { topic: String },
    /// Change a topic's configs or grow its partitions.
    Alter {
        topic: String,
        /// Set a config, key=value (repeatable)
        #[arg(long = "config")]
        configs: Vec<String>,
        /// Remove a config override (repeatable)
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
        /// New (larger) partition count
        #[arg(long)]
        partitions: Option<i32>,
    },
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// Every consumer group with its state.
    List,
    /// Members, committed offsets and lag per partition of one group.
    Describe { group: String },
}

/// One operator command, ready to run against a connected client (`bool`: print JSON).
type OperatorRun = Box<dyn FnOnce(&mut silt_broker::cli::Client, bool) -> anyhow::Result<String>>;

fn operator(command: Command) -> anyhow::Result<()> {
    use silt_broker::cli;
    let (target, run): (Target, OperatorRun) = match command {
        Command::Serve(_) => unreachable!("serve is handled by main"),
        Command::CheckConfig(args) => {
            let config = load_config(&args)?;
            config.validate()?;
            println!("{}", serde_json::to_string_pretty(&config.redacted())?);
            return Ok(());
        }
        Command::Health { admin, live } => {
            let path = if live { "/healthz" } else { "/readyz" };
            let status = silt_broker::admin::probe(&admin, path, std::time::Duration::from_secs(2))
                .map_err(|e| anyhow::anyhow!("{admin}{path}: {e}"))?;
            println!("{admin}{path}: {status}");
            anyhow::ensure!(status == 200, "{admin}{path} answered {status}");
            return Ok(());
        }
        Command::Read(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(silt_broker::cli::read::run(
                silt_broker::cli::read::ReadOptions {
                    url: args.url,
                    topic: args.topic,
                    partition: args.partition,
                    from_offset: args.from_offset,
                    from_time: args.from_time,
                    to_offset: args.to_offset,
                    binary: args.binary,
                },
            ));
        }
        Command::Cluster { target } => (target, Box::new(cli::cluster)),
        Command::Topics { command, target } => (
            target,
            match command {
                TopicsCommand::List => Box::new(cli::topics_list),
                TopicsCommand::Describe { topic } => {
                    Box::new(move |c, j| cli::topics_describe(c, &topic, j))
                }
                TopicsCommand::Create {
                    topic,
                    partitions,
                    replication_factor,
                    configs,
                } => Box::new(move |c, _| {
                    cli::topics_create(c, &topic, partitions, replication_factor, &configs)
                }),
                TopicsCommand::Delete { topic } => {
                    Box::new(move |c, _| cli::topics_delete(c, &topic))
                }
                TopicsCommand::Alter {
                    topic,
                    configs,
                    delete_configs,
                    partitions,
                } => Box::new(move |c, _| {
                    cli::topics_alter(c, &topic, &configs, &delete_configs, partitions)
                }),
            },
        ),
        Command::Groups { command, target } => (
            target,
            match command {
                GroupsCommand::List => Box::new(cli::groups_list),
                GroupsCommand::Describe { group } => {
                    Box::new(move |c, j| cli::groups_describe(c, &group, j))
                }
            },
        ),
    };
    let mut client = cli::Client::connect(&target.bootstrap)?;
    print!("{}", run(&mut client, target.json)?);
    Ok(())
}

/// Flags override `silt.toml` and `SILT_*` environment variables.
#[derive(Args, Serialize, Default, Clone)]
struct ServeArgs {
    /// Configuration file (default: ./silt.toml if present).
    #[arg(long, env = "SILT_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Kafka listener address [env: SILT_LISTEN] [default: 127.0.0.1:9092]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// host:port given to clients [env: SILT_ADVERTISED_LISTENER] [default: the listen address]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertised_listener: Option<String>,
    /// Local data: WAL, hot segments, metadata [env: SILT_DATA_DIR] [default: ./silt-data]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Broker id [env: SILT_NODE_ID] [default: 1]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<i32>,
    /// Metadata store: `embedded` or etcd://host:2379[,host:2379][/namespace] [env: SILT_METADATA] [default: embedded]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    /// Object store URL: file:///path, s3://bucket/prefix or memory:// [env: SILT_OBJECT_STORE] [default: file://<data-dir>/objects]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    object_store: Option<String>,
    /// Log lines as `text` or `json` [env: SILT_LOG_FORMAT] [default: text]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
    /// Admin HTTP (/healthz, /readyz, /metrics) [env: SILT_ADMIN_LISTEN] [default: 127.0.0.1:9095]
    #[arg(long)]
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
    config.expand_env(|name| std::env::var(name).ok())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
        Some(other) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .init();
            return operator(other);
        }
    };
    let config = load_config(&args)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match config.log_format {
        silt_broker::config::LogFormat::Json => logs.json().with_current_span(true).boxed(),
        silt_broker::config::LogFormat::Text => logs.boxed(),
    };
    let otlp = match telemetry::endpoint(config.telemetry.otlp_endpoint.as_deref()) {
        Some(url) => {
            telemetry::check_protocol()?;
            Some((
                telemetry::tracer_provider(
                    &url,
                    config.telemetry.trace_sample_ratio,
                    telemetry::resource(config.node_id),
                )?,
                url,
            ))
        }
        None => None,
    };
    let traces = otlp.as_ref().map(|(provider, _)| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("silt"))
            .with_threads(false)
            .with_location(false)
            .with_filter(tracing_subscriber::filter::filter_fn(telemetry::traced))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
    if let Some((_, url)) = &otlp {
        tracing::info!(%url, "exporting traces and metrics over OTLP/HTTP");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("silt")
        .build()?;
    let served = runtime.block_on(async move {
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
    });
    // After the runtime: the batch processor's exporter blocks on its own thread. A blocking
    // task still running (an fsync on a failing disk) does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Some((provider, _)) = otlp {
        if let Err(error) = provider.shutdown() {
            eprintln!("silt: flushing traces to the collector failed: {error}");
        }
    }
    served
}
