//! Consumer groups (classic protocol) with real clients: librdkafka members sharing a topic,
//! rebalances on leave and on a crashed member's session expiry, committed offsets across a
//! broker kill, the Java consumer with cooperative-sticky and static membership, the Java
//! AdminClient on groups, and error codes for bad group requests.

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use silt_e2e::kafka::{create_topic, producer};
use silt_e2e::{java_client, run, Silt};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const FAST_GROUPS: &[(&str, &str)] = &[("SILT_GROUP_INITIAL_REBALANCE_DELAY_MS", "300")];

fn member(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

async fn produce(bootstrap: &str, topic: &str, from: usize, n: usize) {
    let producer = producer(bootstrap, &[("acks", "all")]);
    let sends: Vec<_> = (from..from + n)
        .map(|i| {
            let value = i.to_string();
            producer
                .send_result(
                    FutureRecord::<(), String>::to(topic)
                        .partition((i % 6) as i32)
                        .payload(&value),
                )
                .expect("enqueue")
        })
        .collect();
    for d in join_all(sends).await {
        d.expect("future").expect("acknowledged");
    }
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer (committing synchronously after each record) until `until` holds or
/// `within` passes; returns the values each one consumed.
fn poll_all(
    consumers: &[&BaseConsumer],
    within: Duration,
    mut until: impl FnMut(&[Vec<usize>]) -> bool,
) -> Vec<Vec<usize>> {
    let mut got = vec![Vec::new(); consumers.len()];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !until(&got) {
        for (i, c) in consumers.iter().enumerate() {
            if let Some(m) = c.poll(Duration::from_millis(20)) {
                let m = m.expect("consume");
                got[i].push(
                    std::str::from_utf8(m.payload().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
                c.commit_message(&m, CommitMode::Sync).expect("commit");
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_librdkafka_members_share_rebalance_and_resume_after_a_broker_kill() {
    let mut silt = Silt::start_with_env(FAST_GROUPS);
    let b = silt.bootstrap();
    create_topic(&b, "shared", 6, &[]).await;
    produce(&b, "shared", 0, 600).await;

    let (a, bb, c) = (member(&b, "g3"), member(&b, "g3"), member(&b, "g3"));
    for m in [&a, &bb, &c] {
        m.subscribe(&["shared"]).unwrap();
    }
    let got = poll_all(&[&a, &bb, &c], Duration::from_secs(60), |g| {
        g.iter().map(Vec::len).sum::<usize>() >= 600
    });
    let total: BTreeSet<usize> = got.iter().flatten().copied().collect();
    assert_eq!(
        total.len(),
        600,
        "every record consumed once across the group"
    );
    assert_eq!(
        got.iter().map(Vec::len).sum::<usize>(),
        600,
        "no record twice"
    );
    let sets = [assigned(&a), assigned(&bb), assigned(&c)];
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    assert_eq!(
        union,
        (0..6).collect(),
        "every partition assigned: {sets:?}"
    );
    assert_eq!(
        sets.iter().map(BTreeSet::len).sum::<usize>(),
        6,
        "to exactly one member: {sets:?}"
    );

    // One member leaves: its partitions move to the others well within the session timeout.
    drop(c);
    let started = Instant::now();
    let mut moved = false;
    while started.elapsed() < Duration::from_secs(15) {
        poll_all(&[&a, &bb], Duration::from_millis(200), |_| false);
        let union: BTreeSet<i32> = assigned(&a).union(&assigned(&bb)).copied().collect();
        if union.len() == 6 && assigned(&a).is_disjoint(&assigned(&bb)) {
            moved = true;
            break;
        }
    }
    assert!(moved, "the leaver's partitions moved");
    println!(
        "partitions moved {:?} after a member left",
        started.elapsed()
    );
    produce(&b, "shared", 600, 300).await;
    let got = poll_all(&[&a, &bb], Duration::from_secs(60), |g| {
        g.iter().map(Vec::len).sum::<usize>() >= 300
    });
    let values: BTreeSet<usize> = got.iter().flatten().copied().collect();
    assert_eq!(
        values,
        (600..900).collect(),
        "after the rebalance: exactly the new records"
    );
    drop(a);
    drop(bb);

    // The broker dies; committed offsets (answered only once durable) survive.
    silt.kill9();
    silt.restart();
    produce(&b, "shared", 900, 60).await;
    let d = member(&b, "g3");
    d.subscribe(&["shared"]).unwrap();
    let got = poll_all(&[&d], Duration::from_secs(60), |g| g[0].len() >= 60);
    let mut values = got[0].clone();
    // A little longer: anything re-delivered would show up now.
    values.extend(poll_all(&[&d], Duration::from_secs(2), |_| false)[0].iter());
    values.sort_unstable();
    assert_eq!(
        values,
        (900..960).collect::<Vec<_>>(),
        "resumed from committed offsets, nothing lost or repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_is_expelled_after_its_session_timeout() {
    let silt = Silt::start_with_env(FAST_GROUPS);
    let b = silt.bootstrap();
    create_topic(&b, "crashy", 6, &[]).await;
    produce(&b, "crashy", 0, 60).await;
    // A Java member that will be SIGKILLed: it never leaves the group.
    let mut java = java_client(3);
    java.env("SILT_JAVA_SESSION_TIMEOUT_MS", "6000")
        .args(["group-consume", &b, "crashy", "gx", "1000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = java.spawn().expect("java");
    let survivor = member(&b, "gx");
    survivor.subscribe(&["crashy"]).unwrap();
    // Wait until the two share the partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        poll_all(&[&survivor], Duration::from_millis(200), |_| false);
        let n = assigned(&survivor).len();
        if (1..6).contains(&n) {
            break;
        }
    }
    let before = assigned(&survivor).len();
    assert!(
        (1..6).contains(&before),
        "the group has two members: survivor holds {before}"
    );
    child.kill().unwrap();
    let _ = child.wait();
    let killed = Instant::now();
    while killed.elapsed() < Duration::from_secs(30) && assigned(&survivor).len() < 6 {
        poll_all(&[&survivor], Duration::from_millis(200), |_| false);
    }
    let took = killed.elapsed();
    assert_eq!(
        assigned(&survivor).len(),
        6,
        "the survivor took over every partition"
    );
    println!(
        "crashed member expelled and partitions reassigned after {took:?} (session timeout 6 s)"
    );
    assert!(
        took < Duration::from_secs(20),
        "within the session timeout plus a rebalance: {took:?}"
    );
}

#[test]
fn java_consumers_cooperative_sticky_static_membership_and_admin_on_groups() {
    let silt = Silt::start_with_env(FAST_GROUPS);
    let b = silt.bootstrap();
    // The Java producer creates the topic (3 partitions) and writes 900 records.
    let (ok, out, err) = run(
        java_client(4).args(["produce", &b, "jgroups", "900"]),
        Duration::from_secs(120),
    )
    .unwrap();
    assert!(ok, "{out}\n{err}");
    let mut total = 900;
    for (round, (major, assignor, instance)) in [
        (3, "cooperative-sticky", None),
        (4, "cooperative-sticky", None),
        (3, "range", Some("static-a")),
        (4, "sticky", Some("static-b")),
    ]
    .into_iter()
    .enumerate()
    {
        let group = format!("j{major}-{assignor}-{}", instance.unwrap_or("dynamic"));
        let mut cmd = java_client(major);
        cmd.args([
            "group-consume",
            &b,
            "jgroups",
            &group,
            &total.to_string(),
            assignor,
        ]);
        if let Some(i) = instance {
            cmd.arg(i);
        }
        let (ok, out, err) = run(&mut cmd, Duration::from_secs(120)).unwrap();
        assert!(
            ok && out.contains(&format!("\"consumed\":{total}")),
            "java {major} {assignor}: {out}\n{err}\n{}",
            silt.log()
        );
        // After the first group has consumed everything, 50 more records give it a lag of 50.
        let lag = if round == 0 {
            let (ok, out, err) = run(
                java_client(3).args(["produce", &b, "jgroups", "50"]),
                Duration::from_secs(120),
            )
            .unwrap();
            assert!(ok, "{out}\n{err}");
            50
        } else {
            0
        };
        let (ok, out, err) = run(
            java_client(major).args(["groups-admin", &b, "jgroups", &group]),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(
            ok && out.contains(&format!("\"lag\":{lag}"))
                && out.contains(&format!("\"committed\":{total}")),
            "admin on {group}: {out}\n{err}"
        );
        total += lag as usize;
        // Static members stay in the group after closing (until their session ends); dynamic
        // ones leave, and their group could be deleted.
        let members = if instance.is_some() {
            "\"members\":1"
        } else {
            "\"members\":0"
        };
        assert!(out.contains(members), "{group}: {out}");
        if let Some(i) = instance {
            // The static member comes back (a restart) and resumes from its commits.
            let mut again = java_client(major);
            again.args(["group-consume", &b, "jgroups", &group, "0", assignor, i]);
            let (ok, out, err) = run(&mut again, Duration::from_secs(120)).unwrap();
            assert!(ok, "static member rejoined: {out}\n{err}");
        }
    }
}

mod bad_input {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;
    use silt_e2e::{raw, Silt};

    fn gid(s: &str) -> GroupId {
        GroupId(StrBytes::from_string(s.into()))
    }

    fn join(silt: &Silt, group: &str, member: &str, metadata: Vec<u8>) -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(gid(group))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.into()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(metadata.into())]);
        raw::call(&silt.bootstrap(), 7, &request).unwrap()
    }

    #[test]
    fn bad_group_requests_get_kafka_error_codes() {
        let silt = Silt::start_with_env(super::FAST_GROUPS);
        // KIP-394: the first join gets an id to come back with.
        let first = join(&silt, "g", "", vec![0, 1]);
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        let member = first.member_id.as_str().to_string();
        assert!(!member.is_empty());
        let joined = join(&silt, "g", &member, vec![0, 1]);
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.leader.as_str(), member, "the only member leads");

        assert_eq!(
            join(&silt, "g", "never-joined", vec![]).error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert_ne!(
            join(&silt, "other", "", vec![0; 2 * 1024 * 1024]).error_code,
            0,
            "oversized protocol metadata"
        );

        let hb = |generation: i32, member: &str| {
            raw::call(
                &silt.bootstrap(),
                4,
                &HeartbeatRequest::default()
                    .with_group_id(gid("g"))
                    .with_generation_id(generation)
                    .with_member_id(StrBytes::from_string(member.into())),
            )
            .unwrap()
            .error_code
        };
        assert_eq!(
            hb(joined.generation_id + 7, &member),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            hb(joined.generation_id, "nobody"),
            ResponseError::UnknownMemberId.code()
        );
        let unknown_group = raw::call(
            &silt.bootstrap(),
            4,
            &HeartbeatRequest::default()
                .with_group_id(gid("no-such-group"))
                .with_member_id(StrBytes::from_static_str("m")),
        )
        .unwrap();
        assert_eq!(
            unknown_group.error_code,
            ResponseError::UnknownMemberId.code()
        );

        // A commit for a partition that does not exist, and one with too much metadata.
        let commit = OffsetCommitRequest::default()
            .with_group_id(gid("simple"))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("nope")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(5)
                ])]);
        let r = raw::call(&silt.bootstrap(), 8, &commit).unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        let deleted = raw::call(
            &silt.bootstrap(),
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("g"), gid("ghost")]),
        )
        .unwrap();
        assert_eq!(
            deleted.results[0].error_code,
            ResponseError::NonEmptyGroup.code()
        );
        assert_eq!(
            deleted.results[1].error_code,
            ResponseError::GroupIdNotFound.code()
        );
    }
}
