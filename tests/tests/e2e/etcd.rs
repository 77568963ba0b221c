//! The etcd backend against a real etcd server: the same conformance suite as the embedded
//! store, and what a store outage looks like to a caller.

use silt_e2e::EtcdServer;
use silt_metadata::{EtcdMetadataStore, EtcdOptions, MetadataStore};
use std::sync::Arc;

async fn connect(url: &str) -> EtcdMetadataStore {
    EtcdMetadataStore::connect(&EtcdOptions::from_url(url).unwrap())
        .await
        .expect("connect to etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_passes_the_conformance_suite() {
    let etcd = EtcdServer::start();
    silt_metadata::testsuite::run_all(Arc::new(connect(&etcd.url("conformance")).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_keep_clusters_apart() {
    let etcd = EtcdServer::start();
    let a = connect(&etcd.url("a")).await;
    let b = connect(&etcd.url("b")).await;
    a.put("/silt/cluster", b"a".to_vec()).await.unwrap();
    assert!(b.get("/silt/cluster").await.unwrap().is_none());
    b.put("/silt/cluster", b"b".to_vec()).await.unwrap();
    let listed = a.list("/silt/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "/silt/cluster", "namespace stripped");
    assert_eq!(listed[0].value, b"a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_many_keys_at_one_revision() {
    let etcd = EtcdServer::start();
    let store = connect(&etcd.url("paging")).await;
    // 2,500 keys: three pages of 1,000, written 100 per transaction.
    for chunk in 0..25 {
        let mut txn = silt_metadata::Txn::new();
        for i in 0..100 {
            txn = txn.then(silt_metadata::Op::put(
                format!("/p/{:05}", chunk * 100 + i),
                vec![1],
            ));
        }
        assert!(store.txn(txn).await.unwrap().succeeded);
    }
    store.put("/q", vec![2]).await.unwrap();
    let listed = store.list("/p/").await.unwrap();
    assert_eq!(listed.len(), 2_500);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
}

/// Commit records with the extents of many partitions are tens of KiB each: a page of them is
/// larger than gRPC's default 4 MiB response limit and must still list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_pages_larger_than_grpcs_default_limit() {
    let etcd = EtcdServer::start();
    let store = connect(&etcd.url("large")).await;
    for i in 0..40 {
        store
            .put(&format!("/big/{i:03}"), vec![b'x'; 200 * 1024])
            .await
            .unwrap();
    }
    let listed = store.list("/big/").await.unwrap();
    assert_eq!(listed.len(), 40);
    let bytes: usize = listed.iter().map(|kv| kv.value.len()).sum();
    assert!(bytes > 4 << 20, "{bytes} bytes in one page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_a_retriable_error_not_a_hang() {
    let mut etcd = EtcdServer::start();
    let store = connect(&etcd.url("outage")).await;
    store.put("/k", vec![1]).await.unwrap();
    etcd.kill();
    let started = std::time::Instant::now();
    let err = store.get("/k").await.expect_err("etcd is down");
    assert!(err.is_retriable(), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded by the request timeout"
    );
    etcd.restart();
    // The client reconnects by itself (bounded wait).
    let mut value = None;
    for _ in 0..50 {
        if let Ok(Some(kv)) = store.get("/k").await {
            value = Some(kv.value);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        value,
        Some(vec![1]),
        "data survived and the client reconnected"
    );
    let refused =
        EtcdMetadataStore::connect(&EtcdOptions::from_url("etcd://127.0.0.1:1").unwrap()).await;
    assert!(refused.is_err(), "nothing listens on port 1");
}
