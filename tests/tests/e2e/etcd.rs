//! The etcd backend against a real etcd server: the same conformance suite as the embedded
//! store, and what a store outage looks like to a caller.

use silt_e2e::pki::TestPki;
use silt_e2e::{EtcdServer, EtcdServerTls};
use silt_metadata::{EtcdMetadataStore, EtcdOptions, MetadataStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// etcd on TLS only, wanting client certificates, with authentication on; `silt` may touch
/// only the keys under `/secure/`.
async fn secure_etcd(pki: &TestPki) -> (EtcdServer, (PathBuf, PathBuf)) {
    let client = pki.client("silt-broker", false);
    let etcd = EtcdServer::start_tls(EtcdServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: pki.ca_pem.clone(),
        auth_token_ttl_s: 2,
    });
    etcd.enable_auth(
        (&client.0, &client.1),
        "root-secret",
        "silt",
        "silt-secret",
        "/secure/",
    )
    .await
    .expect("enable etcd auth");
    (etcd, client)
}

fn secure_options(
    etcd: &EtcdServer,
    ca: &std::path::Path,
    client: Option<&(PathBuf, PathBuf)>,
    user: (&str, &str),
) -> EtcdOptions {
    let mut options = EtcdOptions::from_url(&etcd.url("secure")).unwrap();
    let tls = options.tls.as_mut().expect("etcds:// is TLS");
    tls.ca_pem = std::fs::read(ca).unwrap();
    tls.client_identity =
        client.map(|(cert, key)| (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()));
    options.user = Some((user.0.to_string(), user.1.to_string()));
    options
}

/// The whole store contract (transactions, leases, watches) holds over TLS with a client
/// certificate and an etcd user whose role covers only its namespace, and a token that
/// expired while the client was idle is renewed without the caller seeing an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_over_tls_with_a_user_passes_the_conformance_suite() {
    let pki = TestPki::new();
    let (etcd, client) = secure_etcd(&pki).await;
    let options = secure_options(&etcd, &pki.ca_pem, Some(&client), ("silt", "silt-secret"));
    let store = Arc::new(EtcdMetadataStore::connect(&options).await.expect("connect"));
    silt_metadata::testsuite::run_all(store.clone()).await;
    // Idle past the token's 2 s lifetime: the next request renews it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    store
        .put("/after-idle", b"x".to_vec())
        .await
        .expect("put after the token expired");
    assert_eq!(store.get("/after-idle").await.unwrap().unwrap().value, b"x");
}

/// What an operator gets wrong is refused at connect with a message that says what: a bad
/// password, a missing client certificate, a CA that did not sign etcd's certificate, plain
/// gRPC to a TLS port, a user outside its namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_refuses_wrong_credentials_and_the_error_says_why() {
    let pki = TestPki::new();
    let (etcd, client) = secure_etcd(&pki).await;
    let error = |options: EtcdOptions| async move {
        match EtcdMetadataStore::connect(&options).await {
            Ok(_) => panic!("connected with {options:?}"),
            Err(e) => e.to_string(),
        }
    };

    let bad_password = error(secure_options(
        &etcd,
        &pki.ca_pem,
        Some(&client),
        ("silt", "wrong"),
    ))
    .await;
    assert!(
        bad_password.contains("authentication failed"),
        "{bad_password}"
    );

    let no_certificate = error(secure_options(
        &etcd,
        &pki.ca_pem,
        None,
        ("silt", "silt-secret"),
    ))
    .await;
    assert!(
        no_certificate.contains("no client certificate was offered"),
        "{no_certificate}"
    );

    let wrong_ca = error(secure_options(
        &etcd,
        &pki.other_ca_pem,
        Some(&client),
        ("silt", "silt-secret"),
    ))
    .await;
    assert!(
        wrong_ca.to_lowercase().contains("certificate"),
        "{wrong_ca}"
    );

    let plain = EtcdOptions::from_url(&etcd.url("secure").replacen("etcds", "etcd", 1)).unwrap();
    let plain = error(plain).await;
    assert!(plain.contains("etcd"), "{plain}");

    // Authenticated, but outside the role's keys: every write is refused.
    let mut outside = secure_options(&etcd, &pki.ca_pem, Some(&client), ("silt", "silt-secret"));
    outside.namespace = "/other".into();
    let store = EtcdMetadataStore::connect(&outside).await.expect("connect");
    let denied = store
        .put("/k", vec![1])
        .await
        .expect_err("outside the namespace");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
}
