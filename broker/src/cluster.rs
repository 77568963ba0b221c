//! Cluster membership: this broker's registration under a metadata-store lease, the lease's
//! keep-alive, and the list of live brokers that Metadata and DescribeCluster report.
//!
//! On etcd the keep-alive runs on a thread of its own, with its own single-threaded runtime
//! and its own connection ([`Membership::keep_alive_apart`]): runtime threads held by blocking
//! work (a slow disk, a huge request) must not let the lease lapse and fence the broker.
//!
//! A registration is created only if absent, so node ids are unique among live brokers. It
//! lives under the broker's lease: when the broker dies its lease expires (after
//! `cluster.lease_ttl_ms`) and the registration disappears; when it stops cleanly it revokes
//! the lease at once.
//!
//! Partition leadership across the live brokers is in [`crate::leadership`].

use crate::config::ClusterSettings;
use anyhow::Context;
use futures::future::BoxFuture;
use silt_metadata::catalog::{BrokerRegistration, Catalog};
use silt_metadata::LeaseId;
use silt_metadata::MetadataStore;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Membership {
    catalog: Catalog,
    registration: BrokerRegistration,
    ttl: Duration,
    lease: AtomicI64,
    live: watch::Sender<Vec<BrokerRegistration>>,
    /// When the last keep-alive that succeeded was sent (the lease lives at least a TTL from
    /// then): readiness, and whether this broker may still serve as a leader.
    renewed: std::sync::Mutex<Instant>,
    /// Called when the lease turned out to have expired, before registering again.
    lease_lost: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The keep-alive runs apart ([`Membership::keep_alive_apart`] is connected): the lease
    /// loop leaves it to that thread.
    kept_apart: AtomicBool,
    /// The lease the thread apart found expired (0: none): the lease loop registers again if
    /// it is still the current one (not one already replaced).
    lost_apart: AtomicI64,
}

/// Opens the connection the keep-alive thread uses, on that thread's runtime.
pub type ConnectStore =
    Box<dyn FnOnce() -> BoxFuture<'static, anyhow::Result<Arc<dyn MetadataStore>>> + Send>;

impl Membership {
    /// Registers this broker. A registration of the same node id that is still alive may be
    /// this broker's previous run, killed before its lease expired: it is waited out for up to
    /// one lease TTL (plus slack) before giving up.
    pub async fn join(
        catalog: Catalog,
        registration: BrokerRegistration,
        settings: &ClusterSettings,
    ) -> anyhow::Result<Arc<Membership>> {
        let ttl = Duration::from_millis(settings.lease_ttl_ms);
        let deadline = Instant::now() + ttl + Duration::from_secs(5);
        // Bounded by the deadline: one attempt every 250 ms.
        let (lease, started) = loop {
            let started = Instant::now();
            match register(&catalog, &registration, ttl).await {
                Ok(Ok(lease)) => break (lease, started),
                Ok(Err(other)) if Instant::now() < deadline => {
                    tracing::info!(node = other.node.0, host = %other.host, port = other.port, "node id registered by a live broker (a previous run of this one?); waiting for its lease to expire");
                }
                Ok(Err(other)) => anyhow::bail!(
                    "node id {} is in use by a live broker at {}:{} (started at {} ms); give every broker its own --node-id",
                    other.node.0,
                    other.host,
                    other.port,
                    other.started_ms
                ),
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tracing::warn!(error = %e, "registering the broker failed; retrying");
                }
                Err(e) => return Err(e).context("register the broker"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let live = catalog.live_brokers().await.context("list live brokers")?;
        tracing::info!(
            node = registration.node.0,
            lease,
            ttl_ms = settings.lease_ttl_ms,
            "registered in the cluster"
        );
        let (live, _) = watch::channel(live);
        Ok(Arc::new(Membership {
            catalog,
            registration,
            ttl,
            lease: AtomicI64::new(lease),
            live,
            renewed: std::sync::Mutex::new(started),
            lease_lost: std::sync::OnceLock::new(),
            kept_apart: AtomicBool::new(false),
            lost_apart: AtomicI64::new(0),
        }))
    }

    /// This broker's registration.
    pub fn registration(&self) -> &BrokerRegistration {
        &self.registration
    }

    pub fn lease(&self) -> LeaseId {
        self.lease.load(Ordering::Acquire)
    }

    /// The live brokers as last read (this one included), by node id.
    pub fn live(&self) -> Vec<BrokerRegistration> {
        self.live.borrow().clone()
    }

    /// Changes whenever the live-broker list does.
    pub fn subscribe_live(&self) -> watch::Receiver<Vec<BrokerRegistration>> {
        self.live.subscribe()
    }

    /// Reads the live brokers now (the controller plans with a fresh list).
    pub async fn refresh_live(&self) -> silt_metadata::Result<Vec<BrokerRegistration>> {
        let live = self.catalog.live_brokers().await?;
        self.live.send_if_modified(|current| {
            let changed = *current != live;
            *current = live.clone();
            changed
        });
        Ok(live)
    }

    /// Sets what to do when the lease is found expired (stop leading anything), before this
    /// broker registers again.
    pub fn on_lease_lost(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.lease_lost.set(f);
    }

    /// Whether the lease was confirmed alive within its TTL: the metadata store is reachable
    /// and this broker is a member. A leader that is not healthy acknowledges nothing.
    pub fn healthy(&self) -> bool {
        self.renewed.lock().expect("renewed lock").elapsed() < self.ttl
    }

    /// Keeps the lease alive (every third of its TTL) and refreshes the live-broker list until
    /// cancelled. A lease that expired anyway (the store was unreachable for a whole TTL) is
    /// replaced by a new registration.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let period = (self.ttl / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let lease = self.lease();
            if self.kept_apart.load(Ordering::Acquire) {
                if self.lost_apart.swap(0, Ordering::AcqRel) == lease {
                    self.lost(lease).await;
                }
            } else {
                match self
                    .keep_alive_once(self.catalog.store().as_ref(), lease)
                    .await
                {
                    Ok(()) => {}
                    Err(silt_metadata::Error::LeaseNotFound(_)) => self.lost(lease).await,
                    Err(error) => {
                        tracing::warn!(%error, lease, "keeping the broker's lease alive failed")
                    }
                }
            }
            if let Err(error) = self.refresh_live().await {
                tracing::debug!(%error, "listing live brokers failed");
            }
        }
    }

    /// One keep-alive through `store`; a success moves `renewed` to when it was sent.
    async fn keep_alive_once(
        &self,
        store: &dyn MetadataStore,
        lease: LeaseId,
    ) -> silt_metadata::Result<()> {
        let sent = Instant::now();
        // Bounded: an answer later than a TTL is no renewal anyway.
        let answer = tokio::time::timeout(self.ttl, store.keep_alive(lease))
            .await
            .unwrap_or_else(|_| {
                Err(silt_metadata::Error::Unavailable(format!(
                    "no answer to the keep-alive within {:?}",
                    self.ttl
                )))
            });
        // A renewal of a lease already replaced says nothing about the current one.
        if answer.is_ok() && lease == self.lease() {
            *self.renewed.lock().expect("renewed lock") = sent;
        }
        answer
    }

    async fn lost(&self, lease: LeaseId) {
        tracing::error!(lease, "the broker's lease expired (metadata store unreachable, or this process paused, for a whole TTL); stepping down and registering again");
        if let Some(f) = self.lease_lost.get() {
            f();
        }
        if let Err(error) = self.reregister().await {
            tracing::warn!(%error, "registering again failed; retrying");
        }
    }

    /// Keeps the lease alive from a thread of its own, on a single-threaded runtime of its
    /// own, through the store `connect` opens there (its own connection), every third of the
    /// TTL until `stop`. Until it has connected, and if it cannot, the lease loop keeps the
    /// lease itself; once it runs, the lease loop only registers again when this thread finds
    /// the lease expired, and refreshes the live list.
    pub fn keep_alive_apart(
        self: &Arc<Self>,
        connect: ConnectStore,
        stop: CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("silt-lease".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(error) => {
                        tracing::warn!(%error, "no runtime for the lease keep-alive; the shared runtime keeps it");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let store = tokio::select! {
                        _ = stop.cancelled() => return,
                        store = connect() => match store {
                            Ok(store) => store,
                            Err(error) => {
                                tracing::warn!(error = %format!("{error:#}"), "no connection of its own for the lease keep-alive; the shared runtime keeps it");
                                return;
                            }
                        },
                    };
                    this.kept_apart.store(true, Ordering::Release);
                    let period = (this.ttl / 3).max(Duration::from_millis(100));
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        let lease = this.lease();
                        match this.keep_alive_once(store.as_ref(), lease).await {
                            Ok(()) => {}
                            Err(silt_metadata::Error::LeaseNotFound(_)) => {
                                this.lost_apart.store(lease, Ordering::Release);
                            }
                            Err(error) => {
                                tracing::warn!(%error, lease = this.lease(), "keeping the broker's lease alive failed");
                            }
                        }
                    }
                    this.kept_apart.store(false, Ordering::Release);
                });
            })
    }

    async fn reregister(&self) -> anyhow::Result<()> {
        let sent = Instant::now();
        match register(&self.catalog, &self.registration, self.ttl).await? {
            Ok(lease) => {
                self.lease.store(lease, Ordering::Release);
                *self.renewed.lock().expect("renewed lock") = sent;
                tracing::info!(lease, "registered again");
                Ok(())
            }
            Err(other) => anyhow::bail!(
                "node id {} was taken by a broker at {}:{} while this one's lease was lost",
                other.node.0,
                other.host,
                other.port
            ),
        }
    }

    /// Leaves the cluster at once (revokes the lease, which deletes the registration).
    pub async fn leave(&self) {
        if let Err(error) = self.catalog.store().revoke_lease(self.lease()).await {
            tracing::warn!(%error, "revoking the broker's lease failed; it expires by itself");
        }
    }
}

/// One registration attempt under a new lease: `Ok(lease)`, or the live broker holding the
/// node id (the new lease is revoked then).
async fn register(
    catalog: &Catalog,
    registration: &BrokerRegistration,
    ttl: Duration,
) -> silt_metadata::Result<Result<LeaseId, BrokerRegistration>> {
    let lease = catalog.store().grant_lease(ttl).await?;
    match catalog.register_broker(registration, lease).await {
        Ok(None) => Ok(Ok(lease)),
        Ok(Some(other)) => {
            let _ = catalog.store().revoke_lease(lease).await;
            Ok(Err(other))
        }
        Err(e) => {
            let _ = catalog.store().revoke_lease(lease).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_metadata::{EmbeddedMetadataStore, NodeId};

    /// Both runtime threads held by blocking work for three lease TTLs: the keep-alive on its
    /// own thread keeps the lease, so the broker neither loses it nor registers again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runtime_held_by_blocking_work_does_not_let_the_lease_lapse() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetadataStore> =
            Arc::new(EmbeddedMetadataStore::open(dir.path()).unwrap());
        let registration = BrokerRegistration {
            node: NodeId(1),
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            started_ms: 0,
            listeners: Default::default(),
        };
        let settings = ClusterSettings {
            lease_ttl_ms: 1_000,
            rack: None,
        };
        let membership = Membership::join(Catalog::new(store.clone()), registration, &settings)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let own = store.clone();
        membership
            .keep_alive_apart(
                Box::new(move || Box::pin(async move { Ok(own) })),
                stop.clone(),
            )
            .unwrap();
        let lease_loop = tokio::spawn(membership.clone().run(stop.clone()));
        for _ in 0..100 {
            if membership.kept_apart.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(membership.kept_apart.load(Ordering::Acquire));
        let lease = membership.lease();

        // Two tasks that block their worker threads for 3 s (a disk that stalls, say).
        let hold = || tokio::spawn(async { std::thread::sleep(Duration::from_secs(3)) });
        let (a, b) = (hold(), hold());
        a.await.unwrap();
        b.await.unwrap();

        store
            .keep_alive(lease)
            .await
            .expect("the lease outlived the stall");
        assert_eq!(membership.lease(), lease, "never registered again");
        assert!(membership.healthy());
        stop.cancel();
        lease_loop.await.unwrap();
    }
}
