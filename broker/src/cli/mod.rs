//! The operator CLI: `silt topics`, `silt groups`, `silt cluster`. It speaks the Kafka
//! protocol to any broker (`--bootstrap`), prints tables for people and `--json` for scripts.

mod client;
pub mod read;

pub use client::Client;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn check(code: i16, what: &str) -> anyhow::Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => anyhow::bail!("{what}: {e}"),
    }
}

/// Like [`check`], adding the broker's error message when it sent one.
fn check_with_message(code: i16, message: Option<&StrBytes>, what: &str) -> anyhow::Result<()> {
    match message {
        Some(m) if !m.is_empty() => check(code, &format!("{what}: {}", m.as_str())),
        _ => check(code, what),
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n") + "\n"
}

fn metadata(client: &mut Client, topics: Option<Vec<String>>) -> anyhow::Result<MetadataResponse> {
    // Looking at a topic must not create it.
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect()
        }));
    client.call(&request, 12)
}

/// The brokers a command reaches beyond the bootstrap one: partition leaders (ListOffsets),
/// group coordinators (DescribeGroups, OffsetFetch), every broker (ListGroups). Connections
/// open on first use and are kept for the command.
pub struct Peers {
    addresses: BTreeMap<i32, String>,
    open: HashMap<String, Client>,
}

impl Peers {
    /// The brokers the bootstrap broker knows (a Metadata request for no topics).
    pub fn discover(client: &mut Client) -> anyhow::Result<Peers> {
        let md = client.call(
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(Some(Vec::new())),
            12,
        )?;
        Ok(Self::of(&md))
    }

    /// The brokers a Metadata response already names.
    pub fn of(md: &MetadataResponse) -> Peers {
        let mut peers = Peers {
            addresses: BTreeMap::new(),
            open: HashMap::new(),
        };
        peers.learn(md);
        peers
    }

    /// Adds the brokers a Metadata response names.
    fn learn(&mut self, md: &MetadataResponse) {
        self.addresses.extend(
            md.brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))),
        );
    }

    pub fn ids(&self) -> Vec<i32> {
        self.addresses.keys().copied().collect()
    }

    /// A connection to `address`: the bootstrap client when it is that broker.
    fn at<'a>(
        &'a mut self,
        client: &'a mut Client,
        address: &str,
    ) -> anyhow::Result<&'a mut Client> {
        if client.address == address {
            return Ok(client);
        }
        if !self.open.contains_key(address) {
            let c = Client::connect(address)?;
            self.open.insert(address.to_string(), c);
        }
        Ok(self.open.get_mut(address).expect("just opened"))
    }

    /// A connection to broker `node`.
    fn node<'a>(&'a mut self, client: &'a mut Client, node: i32) -> anyhow::Result<&'a mut Client> {
        let address = self
            .addresses
            .get(&node)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("broker {node} is not in the cluster's metadata"))?;
        self.at(client, &address)
    }
}

/// Offsets of partitions of `topic`, each asked of its leader: for every (partition, leader),
/// one value per timestamp in `timestamps` (-1 where the broker answered with an error, which
/// goes to the returned notes).
fn offsets(
    client: &mut Client,
    peers: &mut Peers,
    topic: &str,
    partitions: &[(i32, i32)],
    timestamps: &[i64],
) -> (BTreeMap<i32, Vec<i64>>, Vec<String>) {
    let mut out: BTreeMap<i32, Vec<i64>> = partitions
        .iter()
        .map(|(p, _)| (*p, vec![-1; timestamps.len()]))
        .collect();
    let mut notes = Vec::new();
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (p, leader) in partitions {
        by_leader.entry(*leader).or_default().push(*p);
    }
    for (leader, parts) in by_leader {
        let conn = match peers.node(client, leader) {
            Ok(c) => c,
            Err(e) => {
                notes.push(format!(
                    "offsets of {topic} {parts:?} from broker {leader}: {e:#}"
                ));
                continue;
            }
        };
        for (i, timestamp) in timestamps.iter().enumerate() {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(*timestamp)
                                    .with_current_leader_epoch(-1)
                            })
                            .collect(),
                    )]);
            let response = match conn.call(&request, 9) {
                Ok(r) => r,
                Err(e) => {
                    notes.push(format!("offsets of {topic} from broker {leader}: {e:#}"));
                    break;
                }
            };
            for p in response.topics.iter().flat_map(|t| &t.partitions) {
                match ResponseError::try_from_code(p.error_code) {
                    None => {
                        if let Some(v) = out.get_mut(&p.partition_index) {
                            v[i] = p.offset;
                        }
                    }
                    Some(e) => notes.push(format!(
                        "offset {timestamp} of {topic}-{} from broker {leader}: {e}",
                        p.partition_index
                    )),
                }
            }
        }
    }
    (out, notes)
}

/// Notes (errors from single brokers or partitions) under a table.
fn with_notes(mut out: String, notes: &[String]) -> String {
    for n in notes {
        out += &format!("note: {n}\n");
    }
    out
}

pub fn topics_list(client: &mut Client, as_json: bool) -> anyhow::Result<String> {
    let md = metadata(client, None)?;
    let mut topics: Vec<(String, usize, usize)> = md
        .topics
        .iter()
        .map(|t| {
            let name = t
                .name
                .as_ref()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
            (name, t.partitions.len(), rf)
        })
        .collect();
    topics.sort();
    if as_json {
        let v: Vec<Value> = topics
            .iter()
            .map(|(n, p, r)| json!({"name": n, "partitions": p, "replicas": r}))
            .collect();
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|(n, p, r)| vec![n.clone(), p.to_string(), r.to_string()])
        .collect();
    Ok(table(&["TOPIC", "PARTITIONS", "REPLICAS"], &rows))
}

pub fn topics_describe(client: &mut Client, topic: &str, as_json: bool) -> anyhow::Result<String> {
    let md = metadata(client, Some(vec![topic.to_string()]))?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| anyhow::anyhow!("no answer for {topic}"))?;
    check(t.error_code, &format!("topic {topic}"))?;
    let partitions: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let mut peers = Peers::of(&md);
    let (offs, notes) = offsets(client, &mut peers, topic, &partitions, &[-2, -1]);
    let configs = client.call(
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configuration_keys(None)]),
        4,
    )?;
    let mut overrides = BTreeMap::new();
    for r in &configs.results {
        check(r.error_code, &format!("configs of {topic}"))?;
        for c in &r.configs {
            if c.config_source == 1 {
                overrides.insert(
                    c.name.as_str().to_string(),
                    c.value
                        .as_ref()
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default(),
                );
            }
        }
    }
    let mut parts = t.partitions.clone();
    parts.sort_by_key(|p| p.partition_index);
    if as_json {
        let ps: Vec<Value> = parts
            .iter()
            .map(|p| {
                let (start, end) = offs.get(&p.partition_index).map_or((-1, -1), |v| (v[0], v[1]));
                json!({"partition": p.partition_index, "leader": p.leader_id.0, "leader_epoch": p.leader_epoch,
                       "log_start_offset": start, "high_watermark": end})
            })
            .collect();
        let v = json!({"name": topic, "topic_id": t.topic_id.to_string(), "partitions": ps, "configs": overrides,
                       "errors": notes});
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let rows: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            let (start, end) = offs
                .get(&p.partition_index)
                .map_or((-1, -1), |v| (v[0], v[1]));
            vec![
                p.partition_index.to_string(),
                p.leader_id.0.to_string(),
                p.leader_epoch.to_string(),
                start.to_string(),
                end.to_string(),
                (end - start).to_string(),
            ]
        })
        .collect();
    let mut out = format!("Topic: {topic}  id: {}\n", t.topic_id);
    if !overrides.is_empty() {
        let cfg: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out += &format!("Configs: {}\n", cfg.join(", "));
    }
    out += &table(
        &["PARTITION", "LEADER", "EPOCH", "START", "END", "RECORDS"],
        &rows,
    );
    Ok(with_notes(out, &notes))
}

fn parse_configs(configs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    configs
        .iter()
        .map(|c| {
            c.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--config wants key=value, got {c:?}"))
        })
        .collect()
}

pub fn topics_create(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    replication: i16,
    configs: &[String],
) -> anyhow::Result<String> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
            .with_configs(
                parse_configs(configs)?
                    .into_iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(s(&k))
                            .with_value(Some(s(&v)))
                    })
                    .collect(),
            )]);
    let response = client.call(&request, 7)?;
    let r = &response.topics[0];
    check_with_message(
        r.error_code,
        r.error_message.as_ref(),
        &format!("create {topic}"),
    )?;
    Ok(format!(
        "created topic {topic} with {} partitions\n",
        r.num_partitions
    ))
}

pub fn topics_delete(client: &mut Client, topic: &str) -> anyhow::Result<String> {
    let response = client.call(
        &DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![TopicName(s(topic))]),
        5,
    )?;
    check(response.responses[0].error_code, &format!("delete {topic}"))?;
    Ok(format!("deleted topic {topic}\n"))
}

pub fn topics_alter(
    client: &mut Client,
    topic: &str,
    set: &[String],
    delete: &[String],
    partitions: Option<i32>,
) -> anyhow::Result<String> {
    let mut changes = Vec::new();
    if !set.is_empty() || !delete.is_empty() {
        let mut ops: Vec<AlterableConfig> = parse_configs(set)?
            .into_iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(s(&k))
                    .with_config_operation(0)
                    .with_value(Some(s(&v)))
            })
            .collect();
        ops.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(1)
        }));
        let response = client.call(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configs(ops),
            ]),
            1,
        )?;
        let r = &response.responses[0];
        check_with_message(
            r.error_code,
            r.error_message.as_ref(),
            &format!("alter {topic}"),
        )?;
        changes.push("configs".to_string());
    }
    if let Some(count) = partitions {
        let response = client.call(
            &CreatePartitionsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_count(count),
                ]),
            3,
        )?;
        let r = &response.results[0];
        check_with_message(
            r.error_code,
            r.error_message.as_ref(),
            &format!("partitions of {topic}"),
        )?;
        changes.push(format!("{count} partitions"));
    }
    if changes.is_empty() {
        anyhow::bail!("nothing to change: give --config, --delete-config or --partitions");
    }
    Ok(format!("altered topic {topic}: {}\n", changes.join(", ")))
}

pub fn groups_list(client: &mut Client, as_json: bool) -> anyhow::Result<String> {
    // Each broker lists the groups it coordinates, as in Kafka: ask every one.
    let mut peers = Peers::discover(client)?;
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut notes = Vec::new();
    for id in peers.ids() {
        let listed = peers
            .node(client, id)
            .and_then(|c| c.call(&ListGroupsRequest::default(), 4))
            .and_then(|r| check(r.error_code, "list groups").map(|()| r));
        match listed {
            Ok(r) => {
                for g in r.groups {
                    found.insert(
                        g.group_id.as_str().to_string(),
                        (
                            g.group_state.as_str().to_string(),
                            g.protocol_type.as_str().to_string(),
                        ),
                    );
                }
            }
            Err(e) => notes.push(format!("groups of broker {id}: {e:#}")),
        }
    }
    anyhow::ensure!(
        notes.len() < peers.ids().len() || notes.is_empty(),
        "no broker listed its groups: {}",
        notes.join("; ")
    );
    let groups: Vec<(String, String, String)> =
        found.into_iter().map(|(g, (st, pt))| (g, st, pt)).collect();
    if as_json {
        let v: Vec<Value> = groups
            .iter()
            .map(|(g, st, pt)| json!({"group": g, "state": st, "protocol_type": pt}))
            .collect();
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let rows: Vec<Vec<String>> = groups
        .into_iter()
        .map(|(g, st, pt)| vec![g, st, pt])
        .collect();
    Ok(with_notes(
        table(&["GROUP", "STATE", "PROTOCOL"], &rows),
        &notes,
    ))
}

pub fn groups_describe(client: &mut Client, group: &str, as_json: bool) -> anyhow::Result<String> {
    // Leaders are learnt with the committed topics' metadata below.
    let mut peers = Peers::of(&MetadataResponse::default());
    let found = client.call(
        &FindCoordinatorRequest::default()
            .with_key(s(group))
            .with_key_type(0),
        3,
    )?;
    check_with_message(
        found.error_code,
        found.error_message.as_ref(),
        &format!("coordinator of {group}"),
    )?;
    let coordinator = format!("{}:{}", found.host.as_str(), found.port);
    let coordinator = peers.at(client, &coordinator)?;
    let described = coordinator.call(
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
        5,
    )?;
    let g = described
        .groups
        .first()
        .ok_or_else(|| anyhow::anyhow!("no answer for {group}"))?;
    check(g.error_code, &format!("group {group}"))?;
    // Which member owns which partition, from the consumer-protocol assignments.
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &g.members {
        let mut a = m.member_assignment.clone();
        if a.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([a[0], a[1]]);
        bytes::Buf::advance(&mut a, 2);
        if let Ok(assignment) = ConsumerProtocolAssignment::decode(&mut a, version) {
            for tp in assignment.assigned_partitions {
                for p in tp.partitions {
                    owner.insert(
                        (tp.topic.as_str().to_string(), p),
                        m.member_id.as_str().to_string(),
                    );
                }
            }
        }
    }
    let fetched = coordinator.call(
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
        7,
    )?;
    check(fetched.error_code, &format!("offsets of {group}"))?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut notes = Vec::new();
    let topics: Vec<String> = fetched
        .topics
        .iter()
        .map(|t| t.name.as_str().to_string())
        .collect();
    let leaders: BTreeMap<(String, i32), i32> = if topics.is_empty() {
        BTreeMap::new()
    } else {
        let md = metadata(client, Some(topics))?;
        peers.learn(&md);
        md.topics
            .iter()
            .flat_map(|t| {
                let name = t
                    .name
                    .as_ref()
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                t.partitions
                    .iter()
                    .map(move |p| ((name.clone(), p.partition_index), p.leader_id.0))
            })
            .collect()
    };
    for t in &fetched.topics {
        let topic = t.name.as_str().to_string();
        let parts: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .filter_map(|p| {
                let leader = leaders.get(&(topic.clone(), p.partition_index))?;
                Some((p.partition_index, *leader))
            })
            .collect();
        let (ends, n) = offsets(client, &mut peers, &topic, &parts, &[-1]);
        notes.extend(n);
        for p in &t.partitions {
            let end = ends.get(&p.partition_index).map_or(-1, |e| e[0]);
            let lag = if end >= 0 && p.committed_offset >= 0 {
                end - p.committed_offset
            } else {
                -1
            };
            let member = owner
                .get(&(topic.clone(), p.partition_index))
                .cloned()
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                topic.clone(),
                p.partition_index.to_string(),
                p.committed_offset.to_string(),
                end.to_string(),
                lag.to_string(),
                member.clone(),
            ]);
            json_rows.push(json!({"topic": topic, "partition": p.partition_index, "committed": p.committed_offset,
                                  "end": end, "lag": lag, "member": member}));
        }
    }
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| json!({"member_id": m.member_id.as_str(), "client_id": m.client_id.as_str(), "host": m.client_host.as_str(),
                        "instance_id": m.group_instance_id.as_ref().map(|i| i.as_str())}))
        .collect();
    if as_json {
        let v = json!({"group": group, "state": g.group_state.as_str(), "protocol": g.protocol_data.as_str(),
                       "coordinator": found.node_id.0, "members": members, "offsets": json_rows, "errors": notes});
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut out = format!(
        "Group: {group}  state: {}  protocol: {}  members: {}\n",
        g.group_state.as_str(),
        g.protocol_data.as_str(),
        g.members.len()
    );
    out += &table(
        &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
        &rows,
    );
    Ok(with_notes(out, &notes))
}

/// Brokers, partition leaders and tiering status: for every partition its log start, local
/// log start (ListOffsets -4), where its segment objects end (-5, the latest tiered offset,
/// plus one), the high watermark, and the tail between those two (records in WAL objects not
/// yet archived: what a new leader replays), each asked of the partition's leader.
pub fn cluster(client: &mut Client, as_json: bool) -> anyhow::Result<String> {
    let described = client.call(&DescribeClusterRequest::default(), 1)?;
    check(described.error_code, "describe cluster")?;
    let md = metadata(client, None)?;
    let mut peers = Peers::of(&md);
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    let mut notes = Vec::new();
    // (topic, partition, leader, epoch, [start, local start, last tiered, end])
    let mut partitions: Vec<(String, i32, i32, i32, Vec<i64>)> = Vec::new();
    let mut topics: Vec<_> = md.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        let name = t
            .name
            .as_ref()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default();
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in &parts {
            *led.entry(p.leader_id.0).or_default() += 1;
        }
        let with_leader: Vec<(i32, i32)> = parts
            .iter()
            .filter(|p| p.leader_id.0 >= 0)
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        let (offs, n) = offsets(client, &mut peers, &name, &with_leader, &[-2, -4, -5, -1]);
        notes.extend(n);
        for p in parts {
            let o = offs
                .get(&p.partition_index)
                .cloned()
                .unwrap_or_else(|| vec![-1; 4]);
            partitions.push((
                name.clone(),
                p.partition_index,
                p.leader_id.0,
                p.leader_epoch,
                o,
            ));
        }
    }
    let brokers: Vec<(i32, String, i32, Option<String>)> = described
        .brokers
        .iter()
        .map(|b| {
            (
                b.broker_id.0,
                b.host.as_str().to_string(),
                b.port,
                b.rack.as_ref().map(|r| r.as_str().to_string()),
            )
        })
        .collect();
    // Where the segment objects end: one past the latest tiered offset (the log start when
    // nothing is archived); unknown (-1) stays so.
    let archived_end = |o: &[i64]| {
        if o[2] >= 0 {
            o[2] + 1
        } else if o[3] >= 0 {
            o[0].max(0)
        } else {
            -1
        }
    };
    let tail = |o: &[i64]| {
        let end = archived_end(o);
        (o[3] >= 0 && end >= 0).then(|| (o[3] - end).max(0))
    };
    if as_json {
        let bs: Vec<Value> = brokers
            .iter()
            .map(|(id, h, p, rack)| {
                json!({"id": id, "host": h, "port": p, "rack": rack,
                                          "partitions_led": led.get(id).copied().unwrap_or(0)})
            })
            .collect();
        let ps: Vec<Value> = partitions
            .iter()
            .map(|(t, i, leader, epoch, o)| json!({"topic": t, "partition": i, "leader": leader, "leader_epoch": epoch,
                "log_start_offset": o[0], "local_log_start_offset": o[1], "archived_end_offset": archived_end(o),
                "high_watermark": o[3], "tail_records": tail(o)}))
            .collect();
        let v = json!({"cluster_id": described.cluster_id.as_str(), "controller": described.controller_id.0,
                       "brokers": bs, "topics": md.topics.len(), "partitions": ps, "errors": notes});
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|(id, h, p, rack)| {
            vec![
                id.to_string(),
                format!("{h}:{p}"),
                rack.clone().unwrap_or_else(|| "-".into()),
                led.get(id).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let part_rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|(t, i, leader, epoch, o)| {
            vec![
                t.clone(),
                i.to_string(),
                leader.to_string(),
                epoch.to_string(),
                o[0].to_string(),
                o[1].to_string(),
                archived_end(o).to_string(),
                o[3].to_string(),
                tail(o).map_or_else(|| "-".into(), |t| t.to_string()),
            ]
        })
        .collect();
    let out = format!(
        "Cluster: {}  controller: {}  topics: {}\n{}\n{}",
        described.cluster_id.as_str(),
        described.controller_id.0,
        md.topics.len(),
        table(&["BROKER", "ADDRESS", "RACK", "PARTITIONS LED"], &rows),
        table(
            &[
                "TOPIC",
                "PARTITION",
                "LEADER",
                "EPOCH",
                "START",
                "LOCAL START",
                "ARCHIVED END",
                "END",
                "TAIL"
            ],
            &part_rows
        )
    );
    Ok(with_notes(out, &notes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
