//! The conformance suite every [`MetadataStore`] backend must pass. Written once, run against
//! each backend (the embedded store's unit tests; the etcd store's integration tests). Keys are
//! namespaced under a random prefix so runs can share one server.

use crate::store::{Compare, MetadataStore, Op, Txn, WatchEventKind};
use crate::Error;
use std::sync::Arc;
use std::time::Duration;

/// Runs every case; panics with the failing case's message.
pub async fn run_all(store: Arc<dyn MetadataStore>) {
    let ns = format!("/conformance-{}", uuid::Uuid::new_v4());
    put_get_list(&*store, &ns).await;
    compares(&*store, &ns).await;
    delete_prefix(&*store, &ns).await;
    watch(&*store, &ns).await;
    leases(&*store, &ns).await;
}

async fn put_get_list(store: &dyn MetadataStore, ns: &str) {
    let k = format!("{ns}/kv/a");
    assert!(
        store.get(&k).await.unwrap().is_none(),
        "absent key reads as None"
    );
    let r1 = store.put(&k, b"1".to_vec()).await.unwrap();
    let kv = store.get(&k).await.unwrap().expect("key after put");
    assert_eq!(kv.value, b"1");
    assert_eq!(kv.create_revision, r1);
    assert_eq!(kv.mod_revision, r1);
    assert_eq!(kv.version, 1);
    let r2 = store.put(&k, b"2".to_vec()).await.unwrap();
    assert!(r2 > r1, "revisions grow");
    let kv = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    store
        .put(&format!("{ns}/kv/b"), b"3".to_vec())
        .await
        .unwrap();
    store
        .put(&format!("{ns}/kvx"), b"4".to_vec())
        .await
        .unwrap();
    let listed = store.list(&format!("{ns}/kv/")).await.unwrap();
    let keys: Vec<_> = listed.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        keys,
        vec![format!("{ns}/kv/a"), format!("{ns}/kv/b")],
        "list by prefix, in key order"
    );
}

async fn compares(store: &dyn MetadataStore, ns: &str) {
    let k = format!("{ns}/cmp/x");
    let create = Txn::new()
        .when(Compare::absent(&k))
        .then(Op::put(&k, b"v1".to_vec()));
    assert!(
        store.txn(create.clone()).await.unwrap().succeeded,
        "create-if-absent on absent key"
    );
    assert!(
        !store.txn(create).await.unwrap().succeeded,
        "create-if-absent on existing key"
    );
    assert_eq!(store.get(&k).await.unwrap().unwrap().value, b"v1");

    let rev = store.get(&k).await.unwrap().unwrap().mod_revision;
    let other = format!("{ns}/cmp/y");
    let cas = Txn::new()
        .when(Compare::mod_revision(&k, rev))
        .then(Op::put(&k, b"v2".to_vec()))
        .then(Op::put(&other, b"side".to_vec()));
    let resp = store.txn(cas.clone()).await.unwrap();
    assert!(resp.succeeded, "compare on current mod revision");
    let kv = store.get(&k).await.unwrap().unwrap();
    let side = store.get(&other).await.unwrap().unwrap();
    assert_eq!(
        kv.mod_revision, side.mod_revision,
        "one revision per transaction"
    );
    assert_eq!(kv.mod_revision, resp.revision);
    assert!(
        !store.txn(cas).await.unwrap().succeeded,
        "stale mod revision fails"
    );

    let by_value = Txn::new()
        .when(Compare::value(&k, b"v2".to_vec()))
        .then(Op::delete(&other));
    assert!(store.txn(by_value).await.unwrap().succeeded);
    assert!(store.get(&other).await.unwrap().is_none());
    let wrong_value = Txn::new()
        .when(Compare::value(&k, b"nope".to_vec()))
        .then(Op::delete(&k));
    assert!(!store.txn(wrong_value).await.unwrap().succeeded);
    assert!(
        store.get(&k).await.unwrap().is_some(),
        "failed txn applied nothing"
    );
}

async fn delete_prefix(store: &dyn MetadataStore, ns: &str) {
    for i in 0..3 {
        store.put(&format!("{ns}/dp/t/{i}"), vec![i]).await.unwrap();
    }
    store.put(&format!("{ns}/dp/u"), vec![9]).await.unwrap();
    store
        .txn(Txn::new().then(Op::delete_prefix(format!("{ns}/dp/t/"))))
        .await
        .unwrap();
    assert!(store.list(&format!("{ns}/dp/t/")).await.unwrap().is_empty());
    assert!(store.get(&format!("{ns}/dp/u")).await.unwrap().is_some());
}

async fn watch(store: &dyn MetadataStore, ns: &str) {
    let prefix = format!("{ns}/watch/");
    let mut rx = store.watch(&prefix).await.unwrap();
    store
        .put(&format!("{ns}/unwatched"), vec![0])
        .await
        .unwrap();
    store
        .put(&format!("{prefix}a"), b"1".to_vec())
        .await
        .unwrap();
    store
        .txn(Txn::new().then(Op::delete(format!("{prefix}a"))))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("watch event within 10 s")
        .expect("watch open");
    assert_eq!(first.kind, WatchEventKind::Put);
    assert_eq!(first.kv.key, format!("{prefix}a"));
    assert_eq!(first.kv.value, b"1");
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("watch event within 10 s")
        .expect("watch open");
    assert_eq!(second.kind, WatchEventKind::Delete);
    assert!(second.kv.mod_revision > first.kv.mod_revision);
}

async fn leases(store: &dyn MetadataStore, ns: &str) {
    let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    let k = format!("{ns}/lease/broker");
    store
        .txn(Txn::new().then(Op::Put {
            key: k.clone(),
            value: b"alive".to_vec(),
            lease: Some(lease),
        }))
        .await
        .unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().lease, Some(lease));
    store.keep_alive(lease).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    assert!(
        store.get(&k).await.unwrap().is_none(),
        "revoking a lease deletes its keys"
    );

    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store
        .txn(Txn::new().then(Op::Put {
            key: k.clone(),
            value: b"alive".to_vec(),
            lease: Some(lease),
        }))
        .await
        .unwrap();
    // Bounded wait for expiry: TTL plus generous slack for a slow backend.
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if store.get(&k).await.unwrap().is_none() {
            gone = true;
            break;
        }
    }
    assert!(gone, "an expired lease's keys are deleted");
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(Error::LeaseNotFound(_))
    ));
    let put_on_dead = store
        .txn(Txn::new().then(Op::Put {
            key: k.clone(),
            value: b"zombie".to_vec(),
            lease: Some(lease),
        }))
        .await;
    assert!(
        put_on_dead.is_err(),
        "a put bound to an expired lease fails"
    );
}
