//! The Silt broker: Kafka protocol server, handlers (one module per API in [`api`]), the
//! partition log and WAL ([`log`]), configuration and the admin HTTP endpoint.
//!
//! It knows how to speak Kafka and how to keep a partition's log; it must not know how a
//! metadata backend stores things (it uses `silt_metadata`'s trait and catalog) nor how objects
//! are laid out in the bucket (that is `silt_tiering`).

pub mod admin;
pub mod api;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod group;
pub mod leadership;
pub mod log;
pub mod metrics;
pub mod security;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tier;
pub mod topic_config;

use anyhow::Context;
use config::Config;
use silt_metadata::catalog::Catalog;
use silt_metadata::EmbeddedMetadataStore;
use std::fs::File;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs blocking work (disk writes, decompression) inline without stalling the runtime: on a
/// multi-threaded runtime its worker first hands its other tasks to another thread
/// (`block_in_place`); elsewhere (a single-threaded test runtime) it just runs.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Takes an exclusive `flock` on `<data-dir>/LOCK` so two brokers never share a data dir.
pub fn lock_data_dir(config: &Config) -> anyhow::Result<File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let path = config.data_dir.join("LOCK");
    let file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data dir {} is in use by another silt process (lock held on {})",
            config.data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("lock data dir"),
    }
}

/// The metadata store the configuration names: the embedded store in `<data-dir>/metadata`, or
/// an etcd cluster.
pub async fn open_metadata_store(
    config: &Config,
) -> anyhow::Result<Arc<dyn silt_metadata::MetadataStore>> {
    if config.metadata == "embedded" {
        let store = EmbeddedMetadataStore::open(&config.data_dir.join("metadata"))?;
        return Ok(Arc::new(store));
    }
    let options = config.etcd.options(&config.metadata)?;
    let store = silt_metadata::EtcdMetadataStore::connect(&options)
        .await
        .with_context(|| format!("open metadata store {}", config.metadata))?;
    Ok(Arc::new(store))
}

/// Runs a broker until `cancel` fires.
pub async fn serve(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let _lock = lock_data_dir(&config)?;
    let objects_url = config.object_store_url()?;
    let catalog = Catalog::new(open_metadata_store(&config).await?);

    // Every listener is bound before anything else starts: a port in use fails the start.
    let tls = if config.listeners().iter().any(|l| l.protocol.tls()) {
        Some(security::tls::TlsServer::new(&config.tls).context("load TLS certificates")?)
    } else {
        None
    };
    let mut listeners = Vec::new();
    for l in config.listeners() {
        let socket = tokio::net::TcpListener::bind(&l.listen)
            .await
            .with_context(|| format!("listener {} on {}", l.name, l.listen))?;
        let info = Arc::new(security::Listener {
            name: l.name.clone(),
            protocol: l.protocol,
        });
        listeners.push((socket, info, l));
    }
    let admin = tokio::net::TcpListener::bind(&config.admin_listen)
        .await
        .with_context(|| format!("admin listen on {}", config.admin_listen))?;
    if let Some(file) = &config.admin_token_file {
        anyhow::ensure!(
            admin::read_token(file).is_some(),
            "admin_token_file {} cannot be read or is empty",
            file.display()
        );
    }
    let ready = admin::Readiness::default();
    let admin_task = tokio::spawn(admin::serve(
        admin,
        ready.clone(),
        config.admin_token_file.clone(),
        cancel.clone(),
    ));

    let broker = broker::Broker::open(config.clone(), catalog).await?;
    let background = tokio::spawn(broker.clone().run_background(cancel.clone()));
    let mut kafka = Vec::new();
    let mut described = Vec::new();
    for (socket, info, l) in listeners {
        described.push(format!(
            "{} {} on {} (advertised {})",
            l.name,
            l.protocol,
            l.listen,
            l.advertised()
        ));
        let tls = l.protocol.tls().then(|| tls.clone()).flatten();
        kafka.push(tokio::spawn(server::serve(
            broker.clone(),
            socket,
            info,
            tls,
            cancel.clone(),
        )));
    }
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().run_reload(cancel.clone()));
    }
    let metrics_push = telemetry::endpoint(config.telemetry.otlp_endpoint.as_deref()).map(|url| {
        tokio::spawn(telemetry::push_metrics(
            url,
            std::time::Duration::from_millis(config.telemetry.otlp_metrics_interval_ms),
            telemetry::resource(config.node_id),
            cancel.clone(),
        ))
    });
    ready.set_check({
        let (membership, wal) = (broker.membership.clone(), broker.wal.clone());
        // Not ready while the lease is not renewed or the WAL refuses writes.
        move || membership.healthy() && wal.failed().is_none()
    });
    ready.set(true);
    tracing::info!(
        listen = %config.listeners()[0].listen,
        listeners = %described.join("; "),
        admin = %config.admin_listen,
        data_dir = %config.data_dir.display(),
        objects = %objects_url,
        node_id = config.node_id,
        "silt broker ready"
    );
    println!(
        "silt: Kafka listeners {}, admin on http://{}, data in {}",
        described.join("; "),
        config.admin_listen,
        config.data_dir.display()
    );
    cancel.cancelled().await;
    ready.set(false);
    let deadline = std::time::Duration::from_millis(config.shutdown_timeout_ms);
    let stopping = async {
        for k in kafka {
            let _ = k.await;
        }
        // Flushes the WAL to the bucket; the lease is kept until then and revoked after.
        let fatal = background.await.ok().flatten();
        broker.shutdown().await;
        if let Some(push) = metrics_push {
            let _ = push.await;
        }
        let _ = admin_task.await;
        fatal
    };
    let stopped = tokio::time::timeout(deadline, stopping).await;
    if let Ok(Some(reason)) = stopped {
        anyhow::bail!("{reason}");
    }
    if stopped.is_err() {
        tracing::warn!(
            shutdown_timeout_ms = config.shutdown_timeout_ms,
            "graceful shutdown did not finish in time; data not yet in the bucket stays in the local WAL and is replayed at the next start"
        );
        anyhow::bail!(
            "graceful shutdown did not finish within shutdown_timeout_ms ({} ms)",
            config.shutdown_timeout_ms
        );
    }
    tracing::info!("silt broker stopped");
    Ok(())
}
