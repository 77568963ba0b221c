//! ACLs as Kafka has them: bindings of (resource type, name, pattern type) to (principal,
//! host, operation, allow/deny), stored in the metadata store and enforced by [`Authorizer`].
//!
//! Keys: `/silt/acls/{sha256 of the binding}` → the binding as JSON. One key per binding makes
//! creating an existing binding a no-op and lets brokers create and delete concurrently
//! without conflicts. Every broker keeps all bindings in memory, re-read on the store's watch
//! and every `authorizer.refresh_ms`; a broker that changes ACLs re-reads them before it
//! answers, so the client that made the change sees it at once.
//!
//! Decisions follow Kafka's `AclAuthorizer`: super users may do anything; a DENY that matches
//! wins over any ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS; a resource no binding matches is open only with
//! `allow_everyone_if_no_acl_found`.

use crate::config::AuthorizerSettings;
use serde::{Deserialize, Serialize};
use silt_metadata::keys;
use silt_metadata::{MetadataStore, Op, Txn};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Kafka's ResourceType codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i8)]
pub enum ResourceType {
    Any = 1,
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

impl ResourceType {
    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            1 => ResourceType::Any,
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }
}

/// Kafka's AclOperation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i8)]
pub enum Operation {
    Any = 1,
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

impl Operation {
    pub fn from_code(code: i8) -> Option<Operation> {
        use Operation::*;
        Some(match code {
            1 => Any,
            2 => All,
            3 => Read,
            4 => Write,
            5 => Create,
            6 => Delete,
            7 => Alter,
            8 => Describe,
            9 => ClusterAction,
            10 => DescribeConfigs,
            11 => AlterConfigs,
            12 => IdempotentWrite,
            13 => CreateTokens,
            14 => DescribeTokens,
            _ => return None,
        })
    }

    /// Whether an ACL for `self` grants `wanted` (Kafka's implications).
    fn grants(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }
}

/// The operations Kafka reports in authorized-operations bit sets, per resource type.
pub const TOPIC_OPERATIONS: &[Operation] = &[
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::Describe,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];
pub const GROUP_OPERATIONS: &[Operation] =
    &[Operation::Read, Operation::Describe, Operation::Delete];
pub const CLUSTER_OPERATIONS: &[Operation] = &[
    Operation::Create,
    Operation::Alter,
    Operation::Describe,
    Operation::ClusterAction,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
    Operation::IdempotentWrite,
];

/// Kafka's PatternType codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i8)]
pub enum PatternType {
    Any = 1,
    Match = 2,
    Literal = 3,
    Prefixed = 4,
}

impl PatternType {
    pub fn from_code(code: i8) -> Option<PatternType> {
        Some(match code {
            1 => PatternType::Any,
            2 => PatternType::Match,
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            _ => return None,
        })
    }
}

/// Kafka's AclPermissionType codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i8)]
pub enum Permission {
    Any = 1,
    Deny = 2,
    Allow = 3,
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Permission> {
        Some(match code {
            1 => Permission::Any,
            2 => Permission::Deny,
            3 => Permission::Allow,
            _ => return None,
        })
    }
}

/// One ACL. `resource_type`, `pattern_type`, `operation` and `permission` are never the
/// `Any`/`Match` filter values in a stored binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding or filter was refused: Kafka answers INVALID_REQUEST with the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAcl(pub String);

impl AclBinding {
    /// Checks a binding from CreateAcls as Kafka does.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        let bad = |m: &str| Err(InvalidAcl(m.to_string()));
        if self.resource_type == ResourceType::Any {
            return bad("an ACL needs a concrete resource type");
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return bad("an ACL's pattern type must be LITERAL or PREFIXED");
        }
        if matches!(self.operation, Operation::Any) {
            return bad("an ACL needs a concrete operation");
        }
        if self.permission == Permission::Any {
            return bad("an ACL's permission must be ALLOW or DENY");
        }
        if self.resource_name.is_empty() {
            return bad("an ACL needs a resource name");
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return bad("the cluster resource is named kafka-cluster");
        }
        if !self
            .principal
            .split_once(':')
            .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
        {
            return bad("an ACL's principal must look like User:name");
        }
        if self.host.is_empty() {
            return bad("an ACL needs a host (`*` for any)");
        }
        Ok(())
    }

    fn key(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("an ACL binding serializes");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        keys::acl(&hex)
    }

    /// Whether this binding's resource pattern covers the resource `name`.
    fn covers(&self, resource: ResourceType, name: &str) -> bool {
        self.resource_type == resource
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                _ => false,
            }
    }
}

/// A DescribeAcls or DeleteAcls filter; `None` fields match anything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// Kafka's filter semantics: ANY matches every value; MATCH matches the bindings that
    /// would apply to the named resource (literal, wildcard and prefixes of it).
    pub fn matches(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        let name_ok = match (self.pattern_type, &self.resource_name) {
            (PatternType::Match, Some(name)) => b.covers(b.resource_type, name),
            (PatternType::Match, None) | (PatternType::Any, None) => true,
            (PatternType::Any, Some(name)) => &b.resource_name == name,
            (pattern, name) => {
                pattern == b.pattern_type && name.as_ref().is_none_or(|n| n == &b.resource_name)
            }
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && (self.operation == Operation::Any || self.operation == b.operation)
            && (self.permission == Permission::Any || self.permission == b.permission)
    }
}

pub fn parse_level(level: &str) -> anyhow::Result<Option<tracing::Level>> {
    Ok(Some(match level.to_ascii_lowercase().as_str() {
        "off" => return Ok(None),
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        other => anyhow::bail!(
            "authorizer log level {other:?} is not off, error, warn, info, debug or trace"
        ),
    }))
}

macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => {
        match $level {
            Some(tracing::Level::ERROR) => tracing::error!(target: "silt::authorizer", $($arg)+),
            Some(tracing::Level::WARN) => tracing::warn!(target: "silt::authorizer", $($arg)+),
            Some(tracing::Level::INFO) => tracing::info!(target: "silt::authorizer", $($arg)+),
            Some(tracing::Level::DEBUG) => tracing::debug!(target: "silt::authorizer", $($arg)+),
            Some(tracing::Level::TRACE) => tracing::trace!(target: "silt::authorizer", $($arg)+),
            None => {}
        }
    };
}

/// The ACL cache and the decisions made with it.
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    allow_if_none: bool,
    log_denied: Option<tracing::Level>,
    log_allowed: Option<tracing::Level>,
    refresh: Duration,
    store: Option<Arc<dyn MetadataStore>>,
    acls: RwLock<Arc<Vec<AclBinding>>>,
    /// ACL records the last reload could not read. While there are any, only super users are
    /// authorized: an unreadable record may be a DENY, so skipping it would fail open.
    unreadable: std::sync::atomic::AtomicUsize,
}

impl Authorizer {
    pub fn new(
        settings: &AuthorizerSettings,
        store: Arc<dyn MetadataStore>,
    ) -> anyhow::Result<Authorizer> {
        Ok(Authorizer {
            enabled: settings.enabled,
            super_users: settings.super_users.clone(),
            allow_if_none: settings.allow_everyone_if_no_acl_found,
            log_denied: parse_level(&settings.log_denied)?,
            log_allowed: parse_level(&settings.log_allowed)?,
            refresh: Duration::from_millis(settings.refresh_ms),
            store: Some(store),
            acls: RwLock::new(Arc::new(Vec::new())),
            unreadable: Default::default(),
        })
    }

    /// An authorizer that allows everything and stores nothing (unit tests).
    pub fn allow_all() -> Authorizer {
        Authorizer {
            enabled: false,
            super_users: Vec::new(),
            allow_if_none: true,
            log_denied: None,
            log_allowed: None,
            refresh: Duration::from_secs(10),
            store: None,
            acls: RwLock::new(Arc::new(Vec::new())),
            unreadable: Default::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn store(&self) -> anyhow::Result<&Arc<dyn MetadataStore>> {
        self.store
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no metadata store"))
    }

    fn snapshot(&self) -> Arc<Vec<AclBinding>> {
        self.acls.read().expect("acl lock").clone()
    }

    /// The decision, without logging.
    pub fn check(
        &self,
        principal: &str,
        host: IpAddr,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        if self.unreadable.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return false;
        }
        let acls = self.snapshot();
        // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d; bindings name
        // either form.
        let host = host.to_canonical();
        let mut matching = acls.iter().filter(|b| b.covers(resource, name)).peekable();
        if matching.peek().is_none() {
            return self.allow_if_none;
        }
        let applies = |b: &&AclBinding| {
            (b.principal == principal || b.principal == "User:*")
                && (b.host == "*"
                    || b.host
                        .parse::<IpAddr>()
                        .is_ok_and(|h| h.to_canonical() == host))
        };
        let mut allowed = false;
        for b in matching.filter(applies) {
            match b.permission {
                // A DENY of ALL, or of the operation itself, wins; implications grant only.
                Permission::Deny if b.operation == Operation::All || b.operation == operation => {
                    return false
                }
                Permission::Allow if b.operation.grants(operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// The decision, logged at `log_denied` or `log_allowed`.
    pub fn authorize(
        &self,
        principal: &str,
        host: IpAddr,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        let allowed = self.check(principal, host, operation, resource, name);
        if !allowed {
            crate::metrics::metrics()
                .authorization_denied
                .with_label_values(&[match resource {
                    ResourceType::Topic => "topic",
                    ResourceType::Group => "group",
                    ResourceType::Cluster => "cluster",
                    ResourceType::TransactionalId => "transactional_id",
                    _ => "other",
                }])
                .inc();
        }
        if self.enabled {
            let level = if allowed {
                self.log_allowed
            } else {
                self.log_denied
            };
            log_at!(
                level,
                principal,
                %host,
                ?operation,
                ?resource,
                resource_name = name,
                allowed,
                "authorization {}",
                if allowed { "allowed" } else { "denied" }
            );
        }
        allowed
    }

    /// Every binding a filter matches.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.snapshot()
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// Re-reads every binding from the store.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let kvs = self.store()?.list(keys::ACLS).await?;
        let mut acls = Vec::with_capacity(kvs.len());
        let mut unreadable = 0;
        for kv in kvs {
            match serde_json::from_slice::<AclBinding>(&kv.value) {
                Ok(b) => acls.push(b),
                Err(error) => {
                    unreadable += 1;
                    tracing::error!(key = %kv.key, %error, "unreadable ACL record: only super users are authorized until it is fixed or deleted");
                }
            }
        }
        *self.acls.write().expect("acl lock") = Arc::new(acls);
        self.unreadable
            .store(unreadable, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Stores bindings (existing ones are left as they are), then re-reads.
    pub async fn create(&self, bindings: &[AclBinding]) -> anyhow::Result<()> {
        for chunk in bindings.chunks(silt_metadata::catalog::TXN_BATCH) {
            let mut txn = Txn::new();
            for b in chunk {
                txn = txn.then(Op::put(b.key(), serde_json::to_vec(b)?));
            }
            self.store()?.txn(txn).await?;
        }
        self.reload().await
    }

    /// Deletes the bindings each filter matches; returns them per filter.
    pub async fn delete(&self, filters: &[AclFilter]) -> anyhow::Result<Vec<Vec<AclBinding>>> {
        self.reload().await?;
        let per_filter: Vec<Vec<AclBinding>> = filters.iter().map(|f| self.describe(f)).collect();
        let mut keys: Vec<String> = per_filter.iter().flatten().map(|b| b.key()).collect();
        keys.sort();
        keys.dedup();
        for chunk in keys.chunks(silt_metadata::catalog::TXN_BATCH) {
            let mut txn = Txn::new();
            for key in chunk {
                txn = txn.then(Op::delete(key.clone()));
            }
            self.store()?.txn(txn).await?;
        }
        self.reload().await?;
        Ok(per_filter)
    }

    /// Keeps the cache current: re-reads on every change the store's watch reports, and every
    /// `refresh_ms` in case a watch was lost. Returns when `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if !self.enabled {
            return;
        }
        let Ok(store) = self.store().cloned() else {
            return;
        };
        let mut watch = None;
        loop {
            if watch.is_none() {
                watch = store.watch(keys::ACLS).await.ok();
            }
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "reading ACLs failed; keeping the ones already read");
            }
            let changed = async {
                match watch.as_mut() {
                    Some(rx) => rx.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.refresh) => {}
                open = changed => if !open { watch = None },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    fn authorizer(acls: Vec<AclBinding>, allow_if_none: bool) -> Authorizer {
        let a = Authorizer {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_if_none,
            ..Authorizer::allow_all()
        };
        *a.acls.write().unwrap() = Arc::new(acls);
        a
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn hosts_match_across_ipv4_mapped_ipv6() {
        let mut deny = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:*",
            Operation::All,
            Permission::Deny,
        );
        deny.host = "10.1.2.3".into();
        let allow = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:alice",
            Operation::All,
            Permission::Allow,
        );
        let a = authorizer(vec![deny, allow], false);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let plain: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "::ffff:10.1.2.4".parse().unwrap();
        for host in [mapped, plain] {
            assert!(
                !a.check(
                    "User:alice",
                    host,
                    Operation::Read,
                    ResourceType::Topic,
                    "t"
                ),
                "{host}"
            );
        }
        assert!(a.check(
            "User:alice",
            other,
            Operation::Read,
            ResourceType::Topic,
            "t"
        ));
    }

    #[tokio::test]
    async fn an_unreadable_acl_record_fails_closed() {
        let store: Arc<dyn MetadataStore> =
            Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory());
        let a = Authorizer {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_if_none: true,
            store: Some(store.clone()),
            ..Authorizer::allow_all()
        };
        let allow = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        );
        a.create(&[allow]).await.unwrap();
        assert!(a.check(
            "User:alice",
            HOST,
            Operation::Read,
            ResourceType::Topic,
            "t"
        ));
        let junk = keys::acl("junk");
        store.put(&junk, b"{not json".to_vec()).await.unwrap();
        a.reload().await.unwrap();
        assert!(!a.check(
            "User:alice",
            HOST,
            Operation::Read,
            ResourceType::Topic,
            "t"
        ));
        assert!(!a.check(
            "User:bob",
            HOST,
            Operation::Read,
            ResourceType::Topic,
            "other"
        ));
        assert!(a.check(
            "User:admin",
            HOST,
            Operation::Read,
            ResourceType::Topic,
            "t"
        ));
        store.txn(Txn::new().then(Op::delete(&junk))).await.unwrap();
        a.reload().await.unwrap();
        assert!(a.check(
            "User:alice",
            HOST,
            Operation::Read,
            ResourceType::Topic,
            "t"
        ));
    }

    #[test]
    fn kafka_semantics() {
        use Operation::*;
        let a = authorizer(
            vec![
                binding(
                    ResourceType::Topic,
                    "orders-",
                    PatternType::Prefixed,
                    "User:alice",
                    Read,
                    Permission::Allow,
                ),
                binding(
                    ResourceType::Topic,
                    "orders-secret",
                    PatternType::Literal,
                    "User:*",
                    All,
                    Permission::Deny,
                ),
                binding(
                    ResourceType::Topic,
                    "*",
                    PatternType::Literal,
                    "User:bob",
                    Write,
                    Permission::Allow,
                ),
            ],
            false,
        );
        let t = ResourceType::Topic;
        assert!(a.check("User:alice", HOST, Read, t, "orders-eu"));
        // READ implies DESCRIBE; it does not imply WRITE.
        assert!(a.check("User:alice", HOST, Describe, t, "orders-eu"));
        assert!(!a.check("User:alice", HOST, Write, t, "orders-eu"));
        // The prefix covers only names that start with it.
        assert!(!a.check("User:alice", HOST, Read, t, "order"));
        assert!(!a.check("User:alice", HOST, Read, t, "xorders-eu"));
        // DENY wins.
        assert!(!a.check("User:alice", HOST, Read, t, "orders-secret"));
        // The wildcard name covers every topic; nothing else covers a group.
        assert!(a.check("User:bob", HOST, Write, t, "anything"));
        assert!(!a.check("User:bob", HOST, Read, ResourceType::Group, "g"));
        // Super users pass everything, DENY included.
        assert!(a.check("User:admin", HOST, Read, t, "orders-secret"));
        let open = authorizer(vec![], true);
        assert!(open.check("User:x", HOST, Read, ResourceType::Group, "g"));
        let closed = authorizer(vec![], false);
        assert!(!closed.check("User:x", HOST, Read, ResourceType::Group, "g"));
    }

    #[test]
    fn filters_match_as_kafka_does() {
        let prefixed = binding(
            ResourceType::Topic,
            "orders-",
            PatternType::Prefixed,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        );
        let any = AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        assert!(any.matches(&prefixed));
        let by_match = AclFilter {
            resource_name: Some("orders-eu".into()),
            pattern_type: PatternType::Match,
            ..any.clone()
        };
        assert!(by_match.matches(&prefixed));
        let literal = AclFilter {
            resource_name: Some("orders-eu".into()),
            pattern_type: PatternType::Literal,
            ..any.clone()
        };
        assert!(!literal.matches(&prefixed));
        let other_principal = AclFilter {
            principal: Some("User:bob".into()),
            ..any
        };
        assert!(!other_principal.matches(&prefixed));
        assert!(prefixed.validate().is_ok());
        let mut bad = prefixed.clone();
        bad.principal = "alice".into();
        assert!(bad.validate().is_err());
    }
}
