//! Group membership state machine and the offsets flusher.

use super::offsets::{GroupOffsets, OffsetEntry};
use bytes::Bytes;
use silt_metadata::MetadataStore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use silt_metadata::keys;

fn group_key(group: &str) -> String {
    keys::group(group)
}

/// Coordinator settings (Kafka's `group.*` and `offsets.*` broker settings).
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub offsets_retention: Duration,
    pub offset_metadata_max_bytes: usize,
    /// Bound on one member's protocol metadata (all protocols together).
    pub max_protocol_metadata_bytes: usize,
    pub max_members: usize,
}

/// Errors answered to clients, one Kafka code each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("member id required")]
    MemberIdRequired,
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    #[error("fenced instance id")]
    FencedInstanceId,
    #[error("group is full")]
    GroupMaxSizeReached,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("group id not found")]
    GroupIdNotFound,
    #[error("group is not empty")]
    NonEmptyGroup,
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    #[error("request timed out")]
    RequestTimedOut,
    #[error("protocol metadata too large")]
    MetadataTooLarge,
    /// The group's offsets with this commit are over the metadata store's record limit.
    #[error("committed offsets too large to store")]
    OffsetsTooLarge,
    /// The group's key was written by another coordinator: this one no longer owns it.
    #[error("not the coordinator")]
    NotCoordinator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// What JoinGroup answers.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// MEMBER_ID_REQUIRED: join again with `member_id`.
    pub member_id_required: bool,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<Result<JoinOutcome, GroupError>>>,
    sync_waiter: Option<oneshot::Sender<Result<Bytes, GroupError>>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    id: String,
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id (static members).
    instances: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// A new group waits `initial_rebalance_delay` for more members before its first generation.
    initial_delay_until: Option<Instant>,
    offsets: GroupOffsets,
}

/// A snapshot for DescribeGroups / ListGroups.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

struct Flush {
    dirty: HashSet<String>,
    waiters: Vec<(String, oneshot::Sender<Result<(), GroupError>>)>,
}

pub struct Coordinator {
    store: Arc<dyn MetadataStore>,
    settings: GroupSettings,
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    flush: Mutex<Flush>,
    flush_wake: Arc<Notify>,
    /// Store revision of each group's key as this coordinator last read or wrote it (absent:
    /// 0). Every write is conditional on it: a coordinator whose group was taken over (the
    /// key written by another) cannot commit offsets any more.
    revisions: Mutex<HashMap<String, i64>>,
    /// Which groups this coordinator answers for (`None`: every group).
    #[allow(clippy::type_complexity)]
    placement: std::sync::RwLock<Option<Arc<dyn Fn(&str) -> bool + Send + Sync>>>,
    /// Groups given up to another coordinator: a write still queued for one fails.
    given_up: Mutex<HashSet<String>>,
}

impl Coordinator {
    /// Sets who decides which groups this coordinator answers for (in a cluster, the group
    /// placement); others get NOT_COORDINATOR.
    pub fn set_placement(&self, owns: Arc<dyn Fn(&str) -> bool + Send + Sync>) {
        *self.placement.write().expect("placement lock") = Some(owns);
    }

    fn check_owner(&self, group_id: &str) -> Result<(), GroupError> {
        match &*self.placement.read().expect("placement lock") {
            Some(owns) if !owns(group_id) => Err(GroupError::NotCoordinator),
            _ => Ok(()),
        }
    }

    /// Loads every group's committed offsets and starts the flusher and the member clock.
    pub async fn start(
        store: Arc<dyn MetadataStore>,
        settings: GroupSettings,
    ) -> anyhow::Result<Arc<Coordinator>> {
        let coordinator = Arc::new(Coordinator {
            store: store.clone(),
            settings,
            groups: Mutex::new(HashMap::new()),
            flush: Mutex::new(Flush {
                dirty: HashSet::new(),
                waiters: Vec::new(),
            }),
            flush_wake: Arc::new(Notify::new()),
            revisions: Mutex::new(HashMap::new()),
            placement: std::sync::RwLock::new(None),
            given_up: Mutex::new(HashSet::new()),
        });
        for kv in store.list(keys::GROUPS).await? {
            let id = kv.key[keys::GROUPS.len()..].to_string();
            let offsets: GroupOffsets = serde_json::from_slice(&kv.value)?;
            let group = coordinator.group(&id, true).expect("created");
            group.lock().expect("group lock").offsets = offsets;
            coordinator
                .revisions
                .lock()
                .expect("revisions lock")
                .insert(id, kv.mod_revision);
        }
        tokio::spawn(flusher(
            Arc::downgrade(&coordinator),
            coordinator.flush_wake.clone(),
        ));
        tokio::spawn(clock(Arc::downgrade(&coordinator)));
        Ok(coordinator)
    }

    fn group(&self, id: &str, create: bool) -> Option<Arc<Mutex<Group>>> {
        let mut groups = self.groups.lock().expect("groups lock");
        if let Some(g) = groups.get(id) {
            return Some(g.clone());
        }
        if !create {
            return None;
        }
        let g = Arc::new(Mutex::new(new_group(id)));
        groups.insert(id.to_string(), g.clone());
        self.given_up.lock().expect("given-up lock").remove(id);
        Some(g)
    }

    /// Makes sure a group this coordinator just became responsible for is in memory with the
    /// offsets another coordinator last stored (a no-op for a group already here).
    pub async fn load(&self, group_id: &str) -> Result<(), GroupError> {
        if self.group(group_id, false).is_some() {
            return Ok(());
        }
        let kv = self
            .store
            .get(&group_key(group_id))
            .await
            .map_err(|error| {
                tracing::warn!(group = %group_id, %error, "loading the group's offsets failed");
                GroupError::CoordinatorNotAvailable
            })?;
        let Some(kv) = kv else {
            return Ok(());
        };
        let offsets: GroupOffsets = serde_json::from_slice(&kv.value).map_err(|error| {
            tracing::error!(group = %group_id, %error, "the group's stored offsets do not decode");
            GroupError::CoordinatorNotAvailable
        })?;
        {
            let mut groups = self.groups.lock().expect("groups lock");
            if groups.contains_key(group_id) {
                // Another request loaded (and maybe changed) it meanwhile: keep that one.
                return Ok(());
            }
            let mut group = new_group(group_id);
            group.offsets = offsets;
            groups.insert(group_id.to_string(), Arc::new(Mutex::new(group)));
            self.given_up
                .lock()
                .expect("given-up lock")
                .remove(group_id);
        }
        self.revisions
            .lock()
            .expect("revisions lock")
            .insert(group_id.to_string(), kv.mod_revision);
        Ok(())
    }

    /// The ids of every group with committed offsets in the store.
    pub async fn stored_groups(&self) -> silt_metadata::Result<Vec<String>> {
        Ok(self
            .store
            .list(keys::GROUPS)
            .await?
            .into_iter()
            .map(|kv| kv.key[keys::GROUPS.len()..].to_string())
            .collect())
    }

    /// The committed offsets stored for `pattern`: one group by name, or every group whose id
    /// starts with the text before a trailing `*`. Offsets that do not decode are skipped.
    pub async fn stored_offsets(
        &self,
        pattern: &str,
    ) -> silt_metadata::Result<Vec<(String, GroupOffsets)>> {
        let kvs = match pattern.strip_suffix('*') {
            Some(prefix) => self.store.list(&group_key(prefix)).await?,
            None => self
                .store
                .get(&group_key(pattern))
                .await?
                .into_iter()
                .collect(),
        };
        Ok(kvs
            .into_iter()
            .filter_map(|kv| {
                let group = kv.key[keys::GROUPS.len()..].to_string();
                match serde_json::from_slice(&kv.value) {
                    Ok(offsets) => Some((group, offsets)),
                    Err(error) => {
                        tracing::warn!(%group, %error, "the group's stored offsets do not decode");
                        None
                    }
                }
            })
            .collect())
    }

    /// Gives up the groups `owns` says another broker coordinates now: their members are told
    /// NOT_COORDINATOR and find the new coordinator, which loads the offsets from the store.
    pub fn give_up_unowned(&self, owns: impl Fn(&str) -> bool) -> usize {
        let lost: Vec<(String, Arc<Mutex<Group>>)> = {
            let mut groups = self.groups.lock().expect("groups lock");
            let ids: Vec<String> = groups.keys().filter(|id| !owns(id)).cloned().collect();
            ids.into_iter()
                .filter_map(|id| groups.remove(&id).map(|g| (id, g)))
                .collect()
        };
        let mut revisions = self.revisions.lock().expect("revisions lock");
        let mut given_up = self.given_up.lock().expect("given-up lock");
        for (id, group) in &lost {
            revisions.remove(id);
            given_up.insert(id.clone());
            let mut g = group.lock().expect("group lock");
            g.state = State::Dead;
            for m in g.members.values_mut() {
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(Err(GroupError::NotCoordinator));
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Err(GroupError::NotCoordinator));
                }
            }
        }
        if !lost.is_empty() {
            tracing::info!(
                groups = lost.len(),
                "gave up consumer groups another broker coordinates now"
            );
        }
        lost.len()
    }

    fn all_groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups
            .lock()
            .expect("groups lock")
            .values()
            .cloned()
            .collect()
    }

    /// JoinGroup. Resolves when the rebalance completes (or at once with an error).
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<String>,
        client_id: &str,
        client_host: &str,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        protocol_type: &str,
        protocols: Vec<(String, Bytes)>,
        require_known_member_id: bool,
    ) -> Result<JoinOutcome, GroupError> {
        self.check_owner(group_id)?;
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if session_timeout < self.settings.min_session_timeout
            || session_timeout > self.settings.max_session_timeout
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if protocols.is_empty() || protocol_type.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if protocols
            .iter()
            .map(|(n, m)| n.len() + m.len())
            .sum::<usize>()
            > self.settings.max_protocol_metadata_bytes
        {
            return Err(GroupError::MetadataTooLarge);
        }
        let group = self.group(group_id, true).expect("created");
        let rx = {
            let mut g = group.lock().expect("group lock");
            if g.state == State::Dead {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            if let Some(pt) = &g.protocol_type {
                if !g.members.is_empty() && pt != protocol_type {
                    return Err(GroupError::InconsistentGroupProtocol);
                }
            }
            // Every member must share at least one protocol with the rest of the group.
            if !g.members.is_empty() {
                let shared = protocols.iter().any(|(name, _)| {
                    g.members
                        .values()
                        .filter(|m| m.id != member_id)
                        .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                });
                if !shared {
                    return Err(GroupError::InconsistentGroupProtocol);
                }
            }
            let now = Instant::now();
            let id = if member_id.is_empty() {
                let new_id = format!("{client_id}-{}", uuid::Uuid::new_v4());
                match &instance_id {
                    Some(instance) => {
                        // KIP-345: a static member that comes back to a stable group with the
                        // same protocols takes its old place and assignment, no rebalance
                        // (unless it led the group: then the assignment is redone).
                        let old_id = g.instances.get(instance).cloned();
                        let unchanged =
                            old_id
                                .as_ref()
                                .and_then(|o| g.members.get(o))
                                .is_some_and(|m| {
                                    m.protocols == protocols
                                        && g.leader.as_deref() != Some(m.id.as_str())
                                });
                        if g.state == State::Stable && unchanged {
                            let old_id = old_id.expect("checked");
                            let mut m = g.members.remove(&old_id).expect("checked");
                            if let Some(w) = m.sync_waiter.take() {
                                let _ = w.send(Err(GroupError::FencedInstanceId));
                            }
                            m.id = new_id.clone();
                            m.session_timeout = session_timeout;
                            m.rebalance_timeout = rebalance_timeout;
                            m.last_heartbeat = now;
                            m.client_host = client_host.to_string();
                            g.members.insert(new_id.clone(), m);
                            g.instances.insert(instance.clone(), new_id.clone());
                            return Ok(JoinOutcome {
                                generation: g.generation,
                                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                                protocol_name: g.protocol_name.clone().unwrap_or_default(),
                                leader: g.leader.clone().unwrap_or_default(),
                                member_id: new_id,
                                members: Vec::new(),
                                member_id_required: false,
                            });
                        }
                        // Otherwise it replaces its old incarnation and the group rebalances.
                        if let Some(old) = g.instances.insert(instance.clone(), new_id.clone()) {
                            if let Some(mut old_member) = g.members.remove(&old) {
                                if let Some(w) = old_member.join_waiter.take() {
                                    let _ = w.send(Err(GroupError::FencedInstanceId));
                                }
                                if let Some(w) = old_member.sync_waiter.take() {
                                    let _ = w.send(Err(GroupError::FencedInstanceId));
                                }
                                if g.leader.as_deref() == Some(old.as_str()) {
                                    g.leader = Some(new_id.clone());
                                }
                            }
                        }
                    }
                    None if require_known_member_id => {
                        // KIP-394: hand out the id; the client joins again with it.
                        g.pending.insert(new_id.clone(), now);
                        return Ok(JoinOutcome {
                            generation: -1,
                            protocol_type: String::new(),
                            protocol_name: String::new(),
                            leader: String::new(),
                            member_id: new_id,
                            members: Vec::new(),
                            member_id_required: true,
                        });
                    }
                    None => {}
                }
                new_id
            } else {
                let known = g.members.contains_key(member_id) || g.pending.contains_key(member_id);
                if !known {
                    return Err(GroupError::UnknownMemberId);
                }
                if let Some(instance) = &instance_id {
                    if g.instances.get(instance).is_some_and(|m| m != member_id) {
                        return Err(GroupError::FencedInstanceId);
                    }
                }
                member_id.to_string()
            };
            g.pending.remove(&id);
            if !g.members.contains_key(&id) && g.members.len() >= self.settings.max_members {
                return Err(GroupError::GroupMaxSizeReached);
            }
            if let Some(instance) = &instance_id {
                g.instances.insert(instance.clone(), id.clone());
            }
            let (tx, rx) = oneshot::channel();
            let member = g.members.entry(id.clone()).or_insert_with(|| Member {
                id: id.clone(),
                instance_id: instance_id.clone(),
                client_id: client_id.to_string(),
                client_host: client_host.to_string(),
                session_timeout,
                rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
            member.protocols = protocols;
            member.session_timeout = session_timeout;
            member.rebalance_timeout = rebalance_timeout;
            member.last_heartbeat = now;
            if let Some(old) = member.join_waiter.replace(tx) {
                let _ = old.send(Err(GroupError::RebalanceInProgress));
            }
            g.protocol_type = Some(protocol_type.to_string());
            if g.state != State::PreparingRebalance {
                self.prepare_rebalance(&mut g);
            }
            self.maybe_complete_join(&mut g);
            rx
        };
        let wait =
            rebalance_timeout.max(self.settings.initial_rebalance_delay) + Duration::from_secs(5);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(GroupError::RebalanceInProgress),
            Err(_) => Err(GroupError::RequestTimedOut),
        }
    }

    fn prepare_rebalance(&self, g: &mut Group) {
        let now = Instant::now();
        // Like Kafka: an empty group waits a moment for more members before its first generation.
        if g.state == State::Empty {
            g.initial_delay_until = Some(now + self.settings.initial_rebalance_delay);
        }
        // Members waiting for their assignment learn that it is coming from a new generation.
        for m in g.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(Err(GroupError::RebalanceInProgress));
            }
        }
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        g.rebalance_deadline = Some(now + timeout);
        tracing::info!(
            group = %g.id,
            state = g.state.name(),
            generation = g.generation,
            members = g.members.len(),
            "preparing to rebalance the group"
        );
        g.state = State::PreparingRebalance;
    }

    /// Completes the join phase when every member has rejoined (after a new group's initial
    /// delay), or when the rebalance deadline passed (members that did not rejoin are removed).
    fn maybe_complete_join(&self, g: &mut Group) {
        if g.state != State::PreparingRebalance {
            return;
        }
        let now = Instant::now();
        let all_joined = g.members.values().all(|m| m.join_waiter.is_some());
        let delayed = g.initial_delay_until.is_some_and(|t| now < t);
        let deadline_passed = g.rebalance_deadline.is_some_and(|t| now >= t);
        if !(all_joined && !delayed || deadline_passed) {
            return;
        }
        g.initial_delay_until = None;
        g.rebalance_deadline = None;
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            remove_member(g, id);
        }
        g.generation += 1;
        tracing::info!(
            group = %g.id,
            generation = g.generation,
            members = g.members.len(),
            removed = gone.len(),
            "group stabilized"
        );
        if g.members.is_empty() {
            g.state = State::Empty;
            g.leader = None;
            g.protocol_name = None;
            return;
        }
        // The protocol most members prefer among those all of them support.
        let candidates: Vec<String> = g
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let candidates: Vec<String> = candidates
            .into_iter()
            .filter(|c| {
                g.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == c))
            })
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in g.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let protocol = candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(c.as_str()).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .cloned()
            .unwrap_or_default();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.protocol_name = Some(protocol.clone());
        g.state = State::CompletingRebalance;
        let leader = g.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = g
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        let generation = g.generation;
        let protocol_type = g.protocol_type.clone().unwrap_or_default();
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
            m.last_heartbeat = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(Ok(JoinOutcome {
                    generation,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                    member_id_required: false,
                }));
            }
        }
    }

    /// SyncGroup: the leader hands in assignments; everyone receives theirs.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<(Bytes, String, String), GroupError> {
        self.check_owner(group_id)?;
        let group = self
            .group(group_id, false)
            .ok_or(GroupError::UnknownMemberId)?;
        let (rx, session, names) = {
            let mut g = group.lock().expect("group lock");
            check_member(&g, member_id, instance_id)?;
            if generation != g.generation {
                return Err(GroupError::IllegalGeneration);
            }
            let names = (
                g.protocol_type.clone().unwrap_or_default(),
                g.protocol_name.clone().unwrap_or_default(),
            );
            match g.state {
                State::PreparingRebalance => return Err(GroupError::RebalanceInProgress),
                State::Stable => {
                    let m = g.members.get(member_id).expect("checked");
                    return Ok((m.assignment.clone(), names.0, names.1));
                }
                State::Empty | State::Dead => return Err(GroupError::UnknownMemberId),
                State::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            let session = {
                let m = g.members.get_mut(member_id).expect("checked");
                m.sync_waiter = Some(tx);
                m.last_heartbeat = Instant::now();
                m.session_timeout
            };
            if g.leader.as_deref() == Some(member_id) {
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in g.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(Ok(m.assignment.clone()));
                    }
                }
                g.state = State::Stable;
            }
            (rx, session, names)
        };
        match tokio::time::timeout(session + Duration::from_secs(5), rx).await {
            Ok(Ok(Ok(assignment))) => Ok((assignment, names.0, names.1)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) | Err(_) => Err(GroupError::RebalanceInProgress),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.check_owner(group_id)?;
        let group = self
            .group(group_id, false)
            .ok_or(GroupError::UnknownMemberId)?;
        let mut g = group.lock().expect("group lock");
        check_member(&g, member_id, instance_id)?;
        g.members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat = Instant::now();
        if g.state == State::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// LeaveGroup for each (member id, instance id); per-member results.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.check_owner(group_id)?;
        let group = self
            .group(group_id, false)
            .ok_or(GroupError::UnknownMemberId)?;
        let mut g = group.lock().expect("group lock");
        let mut results = Vec::new();
        let mut left = false;
        for (member_id, instance_id) in members {
            let id = match (member_id.as_str(), instance_id) {
                ("", Some(instance)) => match g.instances.get(instance) {
                    Some(id) => id.clone(),
                    None => {
                        results.push(Err(GroupError::UnknownMemberId));
                        continue;
                    }
                },
                (id, Some(instance)) if g.instances.get(instance).is_some_and(|m| m != id) => {
                    results.push(Err(GroupError::FencedInstanceId));
                    continue;
                }
                (id, _) => id.to_string(),
            };
            if g.pending.remove(&id).is_some() {
                results.push(Ok(()));
                continue;
            }
            if !g.members.contains_key(&id) {
                results.push(Err(GroupError::UnknownMemberId));
                continue;
            }
            remove_member(&mut g, &id);
            left = true;
            results.push(Ok(()));
        }
        if left {
            self.after_membership_change(&mut g);
        }
        Ok(results)
    }

    fn after_membership_change(&self, g: &mut Group) {
        if g.members.is_empty() && g.state != State::PreparingRebalance {
            g.state = State::Empty;
            g.generation += 1;
            g.leader = None;
            return;
        }
        if g.state != State::PreparingRebalance {
            self.prepare_rebalance(g);
        }
        self.maybe_complete_join(g);
    }

    /// Expires members whose session ran out and completes rebalances whose time has come.
    fn tick(&self) {
        let now = Instant::now();
        for group in self.all_groups() {
            let mut g = group.lock().expect("group lock");
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .filter(|_| g.state != State::PreparingRebalance)
                .map(|m| m.id.clone())
                .collect();
            g.pending
                .retain(|_, at| now.duration_since(*at) < Duration::from_secs(300));
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(group = %g.id, member = %id, "member session expired");
                    remove_member(&mut g, id);
                }
                self.after_membership_change(&mut g);
            }
            self.maybe_complete_join(&mut g);
        }
    }

    /// Commits offsets after checking membership; resolves once they are durable.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, OffsetEntry)>,
    ) -> Result<(), GroupError> {
        self.check_owner(group_id)?;
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.group(group_id, true).expect("created");
        let previous;
        {
            let mut g = group.lock().expect("group lock");
            if generation < 0 && member_id.is_empty() {
                // A "simple" consumer (assign + commit) may commit only to a group without members.
                if !g.members.is_empty() {
                    return Err(GroupError::IllegalGeneration);
                }
            } else {
                check_member(&g, member_id, instance_id)?;
                // Kafka's classic groups: a member of the current generation may commit while
                // the group prepares a rebalance (it is still consuming what it owns, and its
                // progress must not be lost to the next owner); only while the new generation's
                // assignment is being handed out is the answer REBALANCE_IN_PROGRESS.
                if generation != g.generation {
                    return Err(GroupError::IllegalGeneration);
                }
                if g.state == State::CompletingRebalance {
                    return Err(GroupError::RebalanceInProgress);
                }
                g.members
                    .get_mut(member_id)
                    .expect("checked")
                    .last_heartbeat = Instant::now();
            }
            previous = offsets
                .into_iter()
                .map(|(topic, partition, entry)| {
                    let before = g.offsets.get(&topic, partition).cloned();
                    g.offsets.put(&topic, partition, entry.clone());
                    (topic, partition, entry, before)
                })
                .collect::<Vec<_>>();
        }
        let result = self.flushed(group_id).await;
        if result == Err(GroupError::OffsetsTooLarge) {
            // The store refused the whole group's record: take this commit's entries back out
            // (unless a later commit replaced them), so memory matches what is stored.
            let mut g = group.lock().expect("group lock");
            for (topic, partition, entry, before) in previous {
                if g.offsets.get(&topic, partition) == Some(&entry) {
                    match before {
                        Some(before) => g.offsets.put(&topic, partition, before),
                        None => {
                            g.offsets.remove(&topic, partition);
                        }
                    }
                }
            }
        }
        result
    }

    /// Marks the group dirty and waits for the flusher to write it.
    async fn flushed(&self, group_id: &str) -> Result<(), GroupError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut f = self.flush.lock().expect("flush lock");
            f.dirty.insert(group_id.to_string());
            f.waiters.push((group_id.to_string(), tx));
        }
        self.flush_wake.notify_one();
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(result)) => result,
            _ => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// Writes one group's offsets, conditional on the key being as this coordinator left it.
    async fn write_group(&self, id: &str) -> Result<(), GroupError> {
        if self.given_up.lock().expect("given-up lock").contains(id) {
            return Err(GroupError::NotCoordinator);
        }
        let key = group_key(id);
        let revision = self
            .revisions
            .lock()
            .expect("revisions lock")
            .get(id)
            .copied()
            .unwrap_or(0);
        let offsets = self
            .group(id, false)
            .map(|g| g.lock().expect("group lock").offsets.clone())
            .filter(|o| !o.is_empty());
        let op = match &offsets {
            Some(o) => silt_metadata::Op::put(
                &key,
                serde_json::to_vec(o).map_err(|_| GroupError::CoordinatorNotAvailable)?,
            ),
            None if revision == 0 => return Ok(()),
            None => silt_metadata::Op::delete(&key),
        };
        let txn = silt_metadata::Txn::new()
            .when(silt_metadata::Compare::mod_revision(&key, revision))
            .then(op);
        match self.store.txn(txn).await {
            Ok(r) if r.succeeded => {
                crate::metrics::metrics()
                    .group_offset_writes
                    .with_label_values(&["ok"])
                    .inc();
                let mut revisions = self.revisions.lock().expect("revisions lock");
                if offsets.is_some() {
                    revisions.insert(id.to_string(), r.revision);
                } else {
                    revisions.remove(id);
                }
                Ok(())
            }
            Ok(_) => {
                crate::metrics::metrics()
                    .group_offset_writes
                    .with_label_values(&["fenced"])
                    .inc();
                tracing::warn!(group = %id, "the group's offsets were written by another coordinator; giving the group up");
                self.groups.lock().expect("groups lock").remove(id);
                self.revisions.lock().expect("revisions lock").remove(id);
                Err(GroupError::NotCoordinator)
            }
            Err(error) => {
                crate::metrics::metrics()
                    .group_offset_writes
                    .with_label_values(&["error"])
                    .inc();
                if matches!(error, silt_metadata::Error::TooLarge { .. }) {
                    tracing::warn!(group = %id, %error, "the group's committed offsets are too large to store; the commit is refused");
                    return Err(GroupError::OffsetsTooLarge);
                }
                tracing::warn!(group = %id, %error, "writing committed offsets failed");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    pub fn offsets(&self, group_id: &str) -> Option<GroupOffsets> {
        Some(
            self.group(group_id, false)?
                .lock()
                .expect("group lock")
                .offsets
                .clone(),
        )
    }

    pub fn list(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .all_groups()
            .iter()
            .map(|g| summary(&g.lock().expect("group lock")))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        Some(summary(
            &self.group(group_id, false)?.lock().expect("group lock"),
        ))
    }

    /// DeleteGroups: only groups without members; their offsets go too.
    pub async fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        self.check_owner(group_id)?;
        let group = self
            .group(group_id, false)
            .ok_or(GroupError::GroupIdNotFound)?;
        {
            let mut g = group.lock().expect("group lock");
            if !g.members.is_empty() {
                return Err(GroupError::NonEmptyGroup);
            }
            g.state = State::Dead;
            g.offsets = GroupOffsets::default();
        }
        self.groups.lock().expect("groups lock").remove(group_id);
        self.flushed(group_id).await
    }

    /// OffsetDelete: refuses partitions of topics the group's members subscribe to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: &HashSet<String>,
    ) -> Result<Vec<bool>, GroupError> {
        self.check_owner(group_id)?;
        let group = self
            .group(group_id, false)
            .ok_or(GroupError::GroupIdNotFound)?;
        let results = {
            let mut g = group.lock().expect("group lock");
            partitions
                .iter()
                .map(|(t, p)| {
                    if subscribed.contains(t) {
                        false
                    } else {
                        g.offsets.remove(t, *p);
                        true
                    }
                })
                .collect()
        };
        self.flushed(group_id).await?;
        Ok(results)
    }

    /// Members' protocol metadata (for working out subscriptions).
    pub fn member_metadata(&self, group_id: &str) -> Vec<Bytes> {
        let Some(group) = self.group(group_id, false) else {
            return Vec::new();
        };
        let g = group.lock().expect("group lock");
        let protocol = g.protocol_name.clone().unwrap_or_default();
        g.members
            .values()
            .map(|m| m.metadata_for(&protocol))
            .collect()
    }

    /// Forgets groups with no members, no pending joins and no offsets, here or in the store
    /// (Kafka's Dead groups): JoinGroup creates a group for any id, and without this every id
    /// ever used stays in memory and in ListGroups. Returns how many were removed.
    fn remove_dead_groups(&self) -> usize {
        let dirty = self.flush.lock().expect("flush lock").dirty.clone();
        let stored = self.revisions.lock().expect("revisions lock").clone();
        let mut groups = self.groups.lock().expect("groups lock");
        let before = groups.len();
        groups.retain(|id, group| {
            // Someone holding the group (a request in progress) keeps it; the map's lock keeps
            // anyone from taking it meanwhile.
            if Arc::strong_count(group) > 1 || dirty.contains(id) || stored.contains_key(id) {
                return true;
            }
            let g = group.lock().expect("group lock");
            !(g.state == State::Empty
                && g.members.is_empty()
                && g.pending.is_empty()
                && g.offsets.is_empty())
        });
        before - groups.len()
    }

    /// Drops the offsets of groups that have been empty longer than the retention.
    fn expire_offsets(&self, now_ms: i64) -> Vec<String> {
        let retention = self.settings.offsets_retention.as_millis() as i64;
        let mut expired = Vec::new();
        for group in self.all_groups() {
            let mut g = group.lock().expect("group lock");
            if g.state == State::Empty
                && !g.offsets.is_empty()
                && g.offsets
                    .newest_commit_ms()
                    .is_some_and(|t| now_ms - t > retention)
            {
                tracing::info!(group = %g.id, "expiring the offsets of an empty group");
                g.offsets = GroupOffsets::default();
                expired.push(g.id.clone());
            }
        }
        expired
    }
}

fn check_member(g: &Group, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
    if let Some(instance) = instance_id {
        if let Some(current) = g.instances.get(instance) {
            if current != member_id {
                return Err(GroupError::FencedInstanceId);
            }
        }
    }
    if !g.members.contains_key(member_id) {
        return Err(GroupError::UnknownMemberId);
    }
    Ok(())
}

fn new_group(id: &str) -> Group {
    Group {
        id: id.to_string(),
        state: State::Empty,
        generation: 0,
        protocol_type: None,
        protocol_name: None,
        leader: None,
        members: BTreeMap::new(),
        pending: HashMap::new(),
        instances: HashMap::new(),
        rebalance_deadline: None,
        initial_delay_until: None,
        offsets: GroupOffsets::default(),
    }
}

fn remove_member(g: &mut Group, id: &str) {
    if let Some(mut m) = g.members.remove(id) {
        if let Some(instance) = &m.instance_id {
            if g.instances.get(instance).is_some_and(|x| x == id) {
                g.instances.remove(instance);
            }
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
    }
    if g.leader.as_deref() == Some(id) {
        g.leader = None;
    }
}

fn summary(g: &Group) -> GroupSummary {
    let protocol = g.protocol_name.clone().unwrap_or_default();
    GroupSummary {
        id: g.id.clone(),
        state: g.state.name(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_name: if g.state == State::Stable || g.state == State::CompletingRebalance {
            protocol.clone()
        } else {
            String::new()
        },
        members: g
            .members
            .values()
            .map(|m| MemberSummary {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

/// Writes dirty groups' offsets, one store write per group per round, and answers the waiting
/// commits once the round is durable.
async fn flusher(coordinator: Weak<Coordinator>, wake: Arc<Notify>) {
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let (dirty, waiters) = {
            let mut f = c.flush.lock().expect("flush lock");
            (std::mem::take(&mut f.dirty), std::mem::take(&mut f.waiters))
        };
        if dirty.is_empty() && waiters.is_empty() {
            drop(c);
            // notify_one keeps a permit, so a commit made meanwhile is not missed; the bound
            // lets a dropped coordinator end this task.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        let mut results: HashMap<String, Result<(), GroupError>> = HashMap::new();
        for id in dirty {
            let result = c.write_group(&id).await;
            results.insert(id, result);
        }
        for (id, w) in waiters {
            let _ = w.send(results.get(&id).copied().unwrap_or(Ok(())));
        }
    }
}

/// The coordinator's clock: session expiry and rebalance completion every 100 ms, offset
/// expiry every minute.
async fn clock(coordinator: Weak<Coordinator>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_expiry = Instant::now();
    loop {
        tick.tick().await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        c.tick();
        if last_expiry.elapsed() > Duration::from_secs(60) {
            last_expiry = Instant::now();
            // Groups emptied in earlier rounds (their stored offsets deleted by now) go first.
            let removed = c.remove_dead_groups();
            if removed > 0 {
                tracing::info!(groups = removed, "removed empty groups");
            }
            let expired = c.expire_offsets(crate::log::partition::now_ms());
            if !expired.is_empty() {
                let mut f = c.flush.lock().expect("flush lock");
                f.dirty.extend(expired);
                drop(f);
                c.flush_wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_metadata::EmbeddedMetadataStore;

    fn settings() -> GroupSettings {
        GroupSettings {
            initial_rebalance_delay: Duration::from_millis(0),
            min_session_timeout: Duration::from_millis(100),
            max_session_timeout: Duration::from_secs(600),
            offsets_retention: Duration::from_secs(60),
            offset_metadata_max_bytes: 4096,
            max_protocol_metadata_bytes: 1024,
            max_members: 1000,
        }
    }

    async fn join(
        c: &Coordinator,
        group: &str,
        member: &str,
        rebalance: Duration,
    ) -> Result<JoinOutcome, GroupError> {
        c.join(
            group,
            member,
            None,
            "client",
            "/127.0.0.1",
            Duration::from_secs(30),
            rebalance,
            "consumer",
            vec![("range".into(), Bytes::from_static(b"m"))],
            false,
        )
        .await
    }

    #[tokio::test]
    async fn offsets_of_empty_groups_expire_and_are_removed_from_the_store() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let c = Coordinator::start(store.clone(), settings()).await.unwrap();
        let entry = OffsetEntry {
            offset: 42,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_ms: 1_000,
        };
        c.commit("g", -1, "", None, vec![("t".into(), 0, entry.clone())])
            .await
            .unwrap();
        assert!(
            store.get(&group_key("g")).await.unwrap().is_some(),
            "durable before the answer"
        );
        // A restarted coordinator reloads it.
        let again = Coordinator::start(store.clone(), settings()).await.unwrap();
        assert_eq!(again.offsets("g").unwrap().get("t", 0), Some(&entry));
        assert_eq!(
            c.expire_offsets(1_000 + 59_000),
            Vec::<String>::new(),
            "not yet"
        );
        assert_eq!(c.expire_offsets(1_000 + 61_000), vec!["g".to_string()]);
        c.flushed("g").await.unwrap();
        assert!(store.get(&group_key("g")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn empty_groups_without_offsets_are_removed() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let c = Coordinator::start(store.clone(), settings()).await.unwrap();
        let first = join(&c, "idle", "", Duration::from_secs(5)).await.unwrap();
        let joined = join(&c, "idle", &first.member_id, Duration::from_secs(5))
            .await
            .unwrap();
        c.leave("idle", &[(joined.member_id.clone(), None)])
            .unwrap();
        let entry = OffsetEntry {
            offset: 1,
            leader_epoch: 0,
            metadata: None,
            commit_ms: 1_000,
        };
        c.commit("kept", -1, "", None, vec![("t".into(), 0, entry)])
            .await
            .unwrap();
        let ids = |c: &Coordinator| {
            let mut ids: Vec<String> = c.list().into_iter().map(|g| g.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&c), vec!["idle".to_string(), "kept".to_string()]);
        assert_eq!(c.remove_dead_groups(), 1);
        assert_eq!(
            ids(&c),
            vec!["kept".to_string()],
            "a group with offsets stays"
        );
        // Once its offsets expire and the deletion is stored, it goes too.
        assert_eq!(c.expire_offsets(1_000 + 61_000), vec!["kept".to_string()]);
        c.flushed("kept").await.unwrap();
        assert_eq!(c.remove_dead_groups(), 1);
        assert!(ids(&c).is_empty());
    }

    #[tokio::test]
    async fn a_commit_the_store_cannot_hold_is_refused_and_taken_back() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let c = Coordinator::start(store.clone(), settings()).await.unwrap();
        let entry = |offset, metadata: &str| OffsetEntry {
            offset,
            leader_epoch: 0,
            metadata: Some(metadata.into()),
            commit_ms: 1_000,
        };
        c.commit("g", -1, "", None, vec![("t".into(), 0, entry(1, "m"))])
            .await
            .unwrap();
        // Every entry is within offset.metadata.max.bytes, but together they are over the
        // store's record limit.
        let long = "x".repeat(4000);
        let huge: Vec<_> = (0..13_000)
            .map(|p| ("t".to_string(), p, entry(7, &long)))
            .collect();
        assert_eq!(
            c.commit("g", -1, "", None, huge).await,
            Err(GroupError::OffsetsTooLarge)
        );
        assert_eq!(c.offsets("g").unwrap().get("t", 0), Some(&entry(1, "m")));
        assert_eq!(c.offsets("g").unwrap().get("t", 1), None);
        c.commit("g", -1, "", None, vec![("t".into(), 2, entry(3, "m"))])
            .await
            .unwrap();
        let again = Coordinator::start(store.clone(), settings()).await.unwrap();
        let stored = again.offsets("g").unwrap();
        assert_eq!(stored.get("t", 0), Some(&entry(1, "m")));
        assert_eq!(stored.get("t", 2), Some(&entry(3, "m")));
        assert_eq!(stored.get("t", 1), None);
    }

    async fn join_static(
        c: &Coordinator,
        group: &str,
        instance: &str,
    ) -> Result<JoinOutcome, GroupError> {
        c.join(
            group,
            "",
            Some(instance.to_string()),
            "client",
            "/127.0.0.1",
            Duration::from_secs(30),
            Duration::from_secs(5),
            "consumer",
            vec![("range".into(), Bytes::from_static(b"m"))],
            true,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn static_members_come_back_without_a_rebalance_and_fence_their_old_selves() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        // Both first joins land in the new group's initial delay: one generation.
        let c = Coordinator::start(
            store,
            GroupSettings {
                initial_rebalance_delay: Duration::from_millis(300),
                ..settings()
            },
        )
        .await
        .unwrap();
        let (a, b) = tokio::join!(join_static(&c, "s", "a"), join_static(&c, "s", "b"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.generation, b.generation);
        let leader = if a.member_id == a.leader { &a } else { &b };
        let follower = if a.member_id == a.leader { &b } else { &a };
        let follower_instance = if std::ptr::eq(follower, &a) { "a" } else { "b" };
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let (l, f) = tokio::join!(
            c.sync("s", leader.generation, &leader.member_id, None, assignments),
            c.sync("s", follower.generation, &follower.member_id, None, vec![])
        );
        assert_eq!(&l.unwrap().0[..], b"L");
        assert_eq!(&f.unwrap().0[..], b"F");

        // The follower restarts: a new member id, the same generation and assignment.
        let back = join_static(&c, "s", follower_instance).await.unwrap();
        assert_eq!(back.generation, follower.generation, "no rebalance");
        assert_ne!(back.member_id, follower.member_id);
        let (assignment, _, _) = c
            .sync(
                "s",
                back.generation,
                &back.member_id,
                Some(follower_instance),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(&assignment[..], b"F");
        // Its old incarnation is fenced.
        assert_eq!(
            c.heartbeat(
                "s",
                follower.generation,
                &follower.member_id,
                Some(follower_instance)
            ),
            Err(GroupError::FencedInstanceId)
        );
        assert_eq!(
            c.heartbeat(
                "s",
                back.generation,
                &back.member_id,
                Some(follower_instance)
            ),
            Ok(())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_commit_while_a_rebalance_is_prepared_but_not_while_it_completes() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let c = Arc::new(Coordinator::start(store, settings()).await.unwrap());
        let entry = |offset| OffsetEntry {
            offset,
            leader_epoch: 0,
            metadata: None,
            commit_ms: 1_000,
        };
        let a = join_static(&c, "r", "a").await.unwrap();
        c.sync(
            "r",
            a.generation,
            &a.member_id,
            Some("a"),
            vec![(a.member_id.clone(), Bytes::from_static(b"A"))],
        )
        .await
        .unwrap();
        // A second member arrives: the group prepares a rebalance and waits for `a` to rejoin.
        let joining = {
            let c = c.clone();
            tokio::spawn(async move { join_static(&c, "r", "b").await })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.describe("r").map(|d| d.state) != Some("PreparingRebalance") {
            assert!(
                Instant::now() < deadline,
                "the group never started a rebalance"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // `a` still owns what it was assigned: its progress is kept, as Kafka keeps it.
        c.commit(
            "r",
            a.generation,
            &a.member_id,
            Some("a"),
            vec![("t".into(), 0, entry(5))],
        )
        .await
        .unwrap();
        assert_eq!(c.offsets("r").unwrap().get("t", 0), Some(&entry(5)));
        // `a` rejoins; the new generation is being handed out until the leader syncs.
        let again = join_static(&c, "r", "a").await.unwrap();
        let b = joining.await.unwrap().unwrap();
        assert_eq!(again.generation, b.generation);
        assert_eq!(
            c.commit(
                "r",
                again.generation,
                &again.member_id,
                Some("a"),
                vec![("t".into(), 0, entry(6))]
            )
            .await,
            Err(GroupError::RebalanceInProgress)
        );
        assert_eq!(
            c.commit(
                "r",
                a.generation,
                &again.member_id,
                Some("a"),
                vec![("t".into(), 0, entry(6))]
            )
            .await,
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(c.offsets("r").unwrap().get("t", 0), Some(&entry(5)));
    }

    #[tokio::test]
    async fn a_coordinator_that_lost_its_group_cannot_commit() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let entry = |offset| OffsetEntry {
            offset,
            leader_epoch: 0,
            metadata: None,
            commit_ms: 1,
        };
        let old = Coordinator::start(store.clone(), settings()).await.unwrap();
        old.commit("g", -1, "", None, vec![("t".into(), 0, entry(1))])
            .await
            .unwrap();
        // Another coordinator takes the group over (loads it and writes it).
        let new = Coordinator::start(store.clone(), settings()).await.unwrap();
        new.commit("g", -1, "", None, vec![("t".into(), 0, entry(2))])
            .await
            .unwrap();
        assert_eq!(
            old.commit("g", -1, "", None, vec![("t".into(), 0, entry(99))])
                .await,
            Err(GroupError::NotCoordinator)
        );
        let stored: GroupOffsets =
            serde_json::from_slice(&store.get(&group_key("g")).await.unwrap().unwrap().value)
                .unwrap();
        assert_eq!(
            stored.get("t", 0).unwrap().offset,
            2,
            "the fenced commit changed nothing"
        );
    }

    #[tokio::test]
    async fn a_group_moves_between_coordinators_with_its_offsets() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let entry = |offset| OffsetEntry {
            offset,
            leader_epoch: 0,
            metadata: None,
            commit_ms: 1,
        };
        let on_a = Arc::new(AtomicBool::new(true));
        let a = Coordinator::start(store.clone(), settings()).await.unwrap();
        let b = Coordinator::start(store.clone(), settings()).await.unwrap();
        let placed = on_a.clone();
        a.set_placement(Arc::new(move |_: &str| placed.load(Ordering::Acquire)));
        let placed = on_a.clone();
        b.set_placement(Arc::new(move |_: &str| !placed.load(Ordering::Acquire)));
        a.commit("g", -1, "", None, vec![("t".into(), 0, entry(5))])
            .await
            .unwrap();
        assert_eq!(
            b.commit("g", -1, "", None, vec![("t".into(), 0, entry(6))])
                .await,
            Err(GroupError::NotCoordinator),
            "b does not coordinate g yet"
        );
        // g moves to b: a gives it up, b loads it.
        on_a.store(false, Ordering::Release);
        assert_eq!(a.give_up_unowned(|_| false), 1);
        assert_eq!(
            a.commit("g", -1, "", None, vec![("t".into(), 0, entry(99))])
                .await,
            Err(GroupError::NotCoordinator)
        );
        assert!(a.offsets("g").is_none(), "a forgot the group");
        b.load("g").await.unwrap();
        assert_eq!(b.offsets("g").unwrap().get("t", 0).unwrap().offset, 5);
        b.commit("g", -1, "", None, vec![("t".into(), 0, entry(7))])
            .await
            .unwrap();
        let stored: GroupOffsets =
            serde_json::from_slice(&store.get(&group_key("g")).await.unwrap().unwrap().value)
                .unwrap();
        assert_eq!(stored.get("t", 0).unwrap().offset, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_joins_does_not_stall_other_groups() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let c = Coordinator::start(store, settings()).await.unwrap();
        // One member that never completes keeps "flood" rebalancing for a minute...
        let first = join(&c, "flood", "", Duration::from_secs(60))
            .await
            .unwrap();
        let flood: Vec<_> = (0..200)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { join(&c, "flood", "", Duration::from_secs(60)).await })
            })
            .collect();
        // ...while another group forms at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let calm = join(&c, "calm", "", Duration::from_secs(5)).await.unwrap();
        assert_eq!(calm.generation, 1);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert!(c
            .heartbeat("flood", first.generation, &first.member_id, None)
            .is_err());
        for f in flood {
            f.abort();
        }
    }
}
