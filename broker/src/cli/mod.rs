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
use std::collections::BTreeMap;

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

/// (earliest, latest) offsets of every partition of `topic`.
fn offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let mut out = BTreeMap::new();
    for (timestamp, latest) in [(-2i64, false), (-1, true)] {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                                .with_current_leader_epoch(-1)
                        })
                        .collect(),
                )]);
        let response = client.call(&request, 7)?;
        for t in response.topics {
            for p in t.partitions {
                check(
                    p.error_code,
                    &format!("offsets of {topic}-{}", p.partition_index),
                )?;
                let e = out.entry(p.partition_index).or_insert((0, 0));
                if latest {
                    e.1 = p.offset;
                } else {
                    e.0 = p.offset;
                }
            }
        }
    }
    Ok(out)
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
    let partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    let offs = offsets(client, topic, &partitions)?;
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
                let (start, end) = offs.get(&p.partition_index).copied().unwrap_or((-1, -1));
                json!({"partition": p.partition_index, "leader": p.leader_id.0, "leader_epoch": p.leader_epoch,
                       "log_start_offset": start, "high_watermark": end})
            })
            .collect();
        let v = json!({"name": topic, "topic_id": t.topic_id.to_string(), "partitions": ps, "configs": overrides});
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let rows: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            let (start, end) = offs.get(&p.partition_index).copied().unwrap_or((-1, -1));
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
    Ok(out)
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
    let response = client.call(&ListGroupsRequest::default(), 4)?;
    check(response.error_code, "list groups")?;
    let mut groups: Vec<(String, String, String)> = response
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.as_str().to_string(),
                g.group_state.as_str().to_string(),
                g.protocol_type.as_str().to_string(),
            )
        })
        .collect();
    groups.sort();
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
    Ok(table(&["GROUP", "STATE", "PROTOCOL"], &rows))
}

pub fn groups_describe(client: &mut Client, group: &str, as_json: bool) -> anyhow::Result<String> {
    let described = client.call(
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
    let fetched = client.call(
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
        7,
    )?;
    check(fetched.error_code, &format!("offsets of {group}"))?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for t in &fetched.topics {
        let topic = t.name.as_str().to_string();
        let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        let ends = offsets(client, &topic, &parts).unwrap_or_default();
        for p in &t.partitions {
            let end = ends.get(&p.partition_index).map_or(-1, |e| e.1);
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
                       "members": members, "offsets": json_rows});
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
    Ok(out)
}

pub fn cluster(client: &mut Client, as_json: bool) -> anyhow::Result<String> {
    let described = client.call(&DescribeClusterRequest::default(), 1)?;
    check(described.error_code, "describe cluster")?;
    let md = metadata(client, None)?;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for t in &md.topics {
        for p in &t.partitions {
            *led.entry(p.leader_id.0).or_default() += 1;
        }
    }
    let brokers: Vec<(i32, String, i32)> = described
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.as_str().to_string(), b.port))
        .collect();
    if as_json {
        let bs: Vec<Value> = brokers
            .iter()
            .map(|(id, h, p)| json!({"id": id, "host": h, "port": p, "partitions_led": led.get(id).copied().unwrap_or(0)}))
            .collect();
        let v = json!({"cluster_id": described.cluster_id.as_str(), "controller": described.controller_id.0,
                       "brokers": bs, "topics": md.topics.len()});
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|(id, h, p)| {
            vec![
                id.to_string(),
                format!("{h}:{p}"),
                led.get(id).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    Ok(format!(
        "Cluster: {}  controller: {}  topics: {}\n{}",
        described.cluster_id.as_str(),
        described.controller_id.0,
        md.topics.len(),
        table(&["BROKER", "ADDRESS", "PARTITIONS LED"], &rows)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
