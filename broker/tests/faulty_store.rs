//! The commit protocol against a fault-injecting object store: while the store fails, data
//! stays local (the HW does not move, the pending bound holds), and once it heals every
//! appended record reaches a WAL object and becomes visible; PUTs whose answers are lost
//! (conditional manifest PUTs meeting their own earlier attempt) never fork the manifest.

mod common;

use common::{batch, wait_for, OneTopic};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use silt_broker::config::Config;
use silt_metadata::catalog::Catalog;
use silt_metadata::EmbeddedMetadataStore;
use silt_tiering::store::FaultyStore;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_recorded_while_the_store_fails_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.tiering.wal_max_delay_ms = 10;
    config.tiering.max_pending_bytes = 200_000;
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let catalog = Catalog::new(Arc::new(EmbeddedMetadataStore::in_memory()));
    let t = OneTopic::start(config, catalog, store.clone()).await;
    let (broker, p) = (&t.broker, &t.p);
    let append = |tag: &str| t.append(batch(20, tag, &format!("-{}", "p".repeat(1000))));

    append("ok");
    wait_for(
        "the first batch to be recorded",
        Duration::from_secs(5),
        || p.high_watermark() == 20,
    )
    .await;

    faulty.set_failing(true);
    for i in 0..5 {
        append(&format!("down{i}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.high_watermark(),
        20,
        "nothing new is visible while the store fails"
    );
    assert_eq!(p.log_end(), 120, "but it is in the local log");
    assert!(broker.tier.uploads.pending_bytes() > 100_000);
    // The bound on unrecorded data: past it produce is refused (retriably).
    while !broker.tier.uploads.over_limit() {
        append("fill");
    }
    let end = p.log_end();

    faulty.set_failing(false);
    wait_for("uploads to catch up", Duration::from_secs(30), || {
        p.high_watermark() == end && broker.tier.uploads.pending_bytes() == 0
    })
    .await;
    assert!(!broker.tier.uploads.over_limit());

    // Every offset is in exactly one WAL object extent.
    use futures::TryStreamExt;
    let objects: Vec<_> = store
        .list(Some(&silt_tiering::layout::wal_prefix()))
        .try_collect()
        .await
        .unwrap();
    let mut covered = Vec::new();
    for meta in objects {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for e in silt_tiering::wal_object::decode_extents(meta.location.as_ref(), &bytes).unwrap() {
            covered.push((e.first.0, e.end().0));
        }
    }
    covered.sort();
    let mut next = 0;
    for (first, end) in covered {
        assert_eq!(first, next, "extents are contiguous, without overlap");
        next = end;
    }
    assert_eq!(next, end);
    t.stop().await;
}

/// A third of the PUTs are applied and their answers lost, while the tail is archived every two
/// extents: WAL objects, segments and manifests are all retried into keys their first attempt
/// already wrote. The manifest never forks: the pointer's manifest lists every archived offset
/// once, in order, in segment objects that exist, and a manifest whose PUT had no answer is
/// never made current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_put_answers_never_fork_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.tiering.wal_max_delay_ms = 10;
    config.tiering.tail_max_extents = 2;
    config.tiering.archive_interval_ms = 50;
    // The test batches carry 2023 timestamps: keep them past the default 7-day retention.
    config.log.retention_ms = -1;
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let catalog = Catalog::new(Arc::new(EmbeddedMetadataStore::in_memory()));
    let t = OneTopic::start(config, catalog.clone(), store.clone()).await;
    let p = &t.p;
    faulty.set_losing_answers(true);
    for round in 0..30 {
        t.append(batch(10, &format!("r{round}"), "-payload"));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let lost_manifests = || {
        faulty
            .lost_answers()
            .iter()
            .filter(|k| k.as_ref().contains("/manifest/"))
            .count()
    };
    // Generous: a run of lost answers backs a retry off by up to 5 s each time.
    wait_for(
        "manifest PUTs with lost answers, and the log archived to its end",
        Duration::from_secs(120),
        || lost_manifests() >= 1 && p.high_watermark() == 300 && p.manifest().end().0 >= 250,
    )
    .await;
    faulty.set_losing_answers(false);

    let record = catalog
        .partition(p.topic_id, 0)
        .await
        .unwrap()
        .unwrap()
        .record;
    let key = object_store::path::Path::from(record.manifest.expect("a manifest pointer"));
    let manifest = silt_tiering::manifest::Manifest::get(store.as_ref(), &key)
        .await
        .unwrap();
    let mut next = 0;
    for s in &manifest.segments {
        assert_eq!(s.base.0, next, "segments follow each other: {manifest:?}");
        assert!(s.end.0 > s.base.0);
        let path = object_store::path::Path::from(s.key.as_str());
        store
            .head(&path)
            .await
            .expect("every listed segment exists");
        next = s.end.0;
    }
    assert_eq!(
        next,
        manifest.end().0,
        "the segments reach the manifest's end"
    );
    assert!(next >= 250, "archived up to the last short tail: {next}");
    // A manifest whose PUT had no answer is never made current (its sequence number is
    // skipped, so the broker's next sequence number may be past the pointer's), and the
    // broker's view of the archived log is the pointer's.
    let lost: Vec<String> = faulty
        .lost_answers()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert!(!lost.contains(&key.to_string()), "{key} in {lost:?}");
    let mine = p.manifest();
    assert_eq!(
        (mine.epoch, &mine.segments, mine.end(), mine.log_start),
        (
            manifest.epoch,
            &manifest.segments,
            manifest.end(),
            manifest.log_start
        )
    );
    assert!(mine.seq >= manifest.seq);
    t.stop().await;
}
