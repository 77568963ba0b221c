//! OTLP export to a collector: request spans with their partition work as children, and the
//! Prometheus metrics pushed with the same names and values; a collector that is down costs
//! the broker nothing.

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use silt_e2e::kafka::{consume_all, create_topic, produce_keyed};
use silt_e2e::{OtlpCollector, Silt};
use std::time::{Duration, Instant};

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Polls `f` every 200 ms for up to 30 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_metrics_reach_an_otlp_collector() {
    let collector = OtlpCollector::start();
    let endpoint = collector.endpoint();
    let silt = Silt::start_with_env(&[
        ("SILT_TELEMETRY__OTLP_ENDPOINT", &endpoint),
        ("SILT_TELEMETRY__TRACE_SAMPLE_RATIO", "1"),
        ("SILT_TELEMETRY__OTLP_METRICS_INTERVAL_MS", "300"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ]);
    create_topic(&silt.bootstrap(), "traced", 2, &[]).await;
    produce_keyed(
        &silt.bootstrap(),
        "traced",
        2,
        0..120,
        &[("client.id", "otlp-e2e"), ("acks", "all")],
    )
    .await;
    assert_eq!(
        consume_all(&silt.bootstrap(), "traced", 2, 120, Duration::from_secs(30)).len(),
        120
    );

    // Traces: a Produce span from our client, the root of its trace, with a partition span
    // for the topic as its child.
    let spans = || -> Vec<(Vec<KeyValue>, Span)> {
        collector
            .traces()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| {
                let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
                rs.scope_spans
                    .into_iter()
                    .flat_map(|ss| ss.spans)
                    .map(move |s| (resource.clone(), s))
            })
            .collect()
    };
    let (resource, produce, child) = eventually("a Produce span with its partition child", || {
        let all = spans();
        all.iter().find_map(|(resource, s)| {
            if s.name != "Produce" || attr(&s.attributes, "client_id") != Some("otlp-e2e") {
                return None;
            }
            let child = all.iter().find(|(_, c)| {
                c.trace_id == s.trace_id
                    && c.parent_span_id == s.span_id
                    && c.name == "partition"
                    && attr(&c.attributes, "topic") == Some("traced")
            })?;
            Some((resource.clone(), s.clone(), child.1.clone()))
        })
    });
    assert!(
        produce.parent_span_id.is_empty(),
        "a request is the root of its trace"
    );
    assert_eq!(produce.kind, 2, "a server span");
    for key in ["correlation_id", "api_version", "peer"] {
        assert!(
            produce.attributes.iter().any(|kv| kv.key == key),
            "{key} in {:?}",
            produce.attributes
        );
    }
    assert!(child.end_time_unix_nano <= produce.end_time_unix_nano);
    assert_eq!(attr(&resource, "service.name"), Some("silt"));
    assert!(attr(&resource, "service.instance.id").is_some());
    eventually("the consumer's Fetch requests, traced too", || {
        spans().iter().any(|(_, s)| s.name == "Fetch").then_some(())
    });

    // Metrics: the pushed values match what was produced; the request histogram is coherent.
    eventually("pushed metrics that count all 120 records", || {
        let latest = collector.metrics().pop()?;
        let metrics: Vec<_> = latest
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .cloned()
            .collect();
        let records_in = metrics
            .iter()
            .find(|m| m.name == "silt_broker_records_in_total")?;
        let Some(metric::Data::Sum(sum)) = &records_in.data else {
            panic!("records in is a sum: {records_in:?}")
        };
        assert!(sum.is_monotonic);
        let total: f64 = sum
            .data_points
            .iter()
            .filter(|p| attr(&p.attributes, "topic") == Some("traced"))
            .map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                Some(number_data_point::Value::AsInt(v)) => v as f64,
                None => 0.0,
            })
            .sum();
        if total < 120.0 {
            return None;
        }
        assert_eq!(total, 120.0, "records in, pushed over OTLP");
        let latency = metrics
            .iter()
            .find(|m| m.name == "silt_broker_request_duration_seconds")
            .expect("request latency pushed");
        assert_eq!(latency.unit, "s");
        let Some(metric::Data::Histogram(h)) = &latency.data else {
            panic!("latency is a histogram")
        };
        let produce = h
            .data_points
            .iter()
            .find(|p| attr(&p.attributes, "api") == Some("Produce"))
            .expect("a Produce series");
        assert!(produce.count >= 1);
        assert_eq!(
            produce.bucket_counts.len(),
            produce.explicit_bounds.len() + 1
        );
        assert_eq!(produce.bucket_counts.iter().sum::<u64>(), produce.count);
        Some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_the_broker_nothing() {
    let nobody = format!("http://127.0.0.1:{}", silt_e2e::free_port());
    let mut silt = Silt::start_with_env(&[
        ("SILT_TELEMETRY__OTLP_ENDPOINT", &nobody),
        ("SILT_TELEMETRY__TRACE_SAMPLE_RATIO", "1"),
        ("SILT_TELEMETRY__OTLP_METRICS_INTERVAL_MS", "200"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    create_topic(&silt.bootstrap(), "untraced", 1, &[]).await;
    produce_keyed(&silt.bootstrap(), "untraced", 1, 0..200, &[("acks", "all")]).await;
    assert_eq!(
        consume_all(
            &silt.bootstrap(),
            "untraced",
            1,
            200,
            Duration::from_secs(30)
        )
        .len(),
        200
    );
    // Stopping is not held up by the collector (stop() kills after 20 s: not a success).
    let status = silt.stop().expect("exit status");
    assert!(status.success(), "clean exit: {status:?}\n{}", silt.log());
    assert!(silt.log().contains("pushing metrics over OTLP failed"));
}

/// Commits `offset` for partition 0 of `topic` as `group` (a consumer that never joins).
fn commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .expect("tpl");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// The value of `silt_broker_consumer_group_lag_records{group="…"}`, if the series exists.
fn lag(silt: &Silt, group: &str) -> Option<i64> {
    let (_, text) = silt_e2e::http_get(silt.admin_port, "/metrics").expect("metrics");
    let series = format!("silt_broker_consumer_group_lag_records{{group=\"{group}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map(|v| v.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_is_a_metric_for_the_configured_groups_only() {
    let silt = Silt::start_with_env(&[
        ("SILT_TELEMETRY__LAG_GROUPS", r#"["billing", "etl-*"]"#),
        ("SILT_TELEMETRY__LAG_GROUPS_MAX", "2"),
        ("SILT_TELEMETRY__LAG_REFRESH_MS", "200"),
    ]);
    let b = silt.bootstrap();
    create_topic(&b, "lagged", 1, &[]).await;
    produce_keyed(&b, "lagged", 1, 0..100, &[("acks", "all")]).await;
    commit(&b, "billing", "lagged", 40);
    commit(&b, "etl-a", "lagged", 100);
    commit(&b, "etl-b", "lagged", 10);
    commit(&b, "reporting", "lagged", 0);
    eventually("lag series for billing and etl-a", || {
        (lag(&silt, "billing") == Some(60) && lag(&silt, "etl-a") == Some(0)).then_some(())
    });
    assert_eq!(lag(&silt, "etl-b"), None, "past lag_groups_max");
    assert_eq!(lag(&silt, "reporting"), None, "not a configured group");
    // The lag follows new records and new commits.
    produce_keyed(&b, "lagged", 1, 100..125, &[("acks", "all")]).await;
    commit(&b, "etl-a", "lagged", 120);
    eventually("lag after 25 more records", || {
        (lag(&silt, "billing") == Some(85) && lag(&silt, "etl-a") == Some(5)).then_some(())
    });
}

/// `GET path` on the admin port with extra header lines (raw bytes): the status code.
fn admin_get(port: u16, path: &str, headers: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n").into_bytes();
    request.extend_from_slice(headers);
    request.extend_from_slice(b"connection: close\r\n\r\n");
    s.write_all(&request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status")
}

/// With `admin_token_file`, `/metrics` wants the bearer token (read again on every request, so
/// a rotated Secret applies at once; an unreadable file refuses everyone) while the probes stay
/// open; a header that is not UTF-8 or cut inside a character is just refused.
#[test]
fn metrics_want_the_admin_token_and_probes_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let silt = Silt::start_with_env(&[("SILT_ADMIN_TOKEN_FILE", token.to_str().unwrap())]);
    let port = silt.admin_port;
    assert_eq!(admin_get(port, "/metrics", b""), 401);
    assert_eq!(
        admin_get(port, "/metrics", b"authorization: Bearer wrong\r\n"),
        401
    );
    assert_eq!(
        admin_get(port, "/metrics", b"Authorization: bearer first-token\r\n"),
        200
    );
    assert_eq!(admin_get(port, "/healthz", b""), 200);
    assert_eq!(admin_get(port, "/readyz", b""), 200);
    for hostile in [
        &b"authorization: Bearer\xff\xfe first-token\r\n"[..],
        "authorization: Bearé first-token\r\n".as_bytes(),
        b"authorization:\r\n",
        b"authorization: Bearer \r\n",
    ] {
        assert_eq!(admin_get(port, "/metrics", hostile), 401, "{hostile:?}");
    }
    // Rotation: the old token stops working, the new one works, without a restart.
    std::fs::write(&token, "second-token").unwrap();
    assert_eq!(
        admin_get(port, "/metrics", b"authorization: Bearer first-token\r\n"),
        401
    );
    assert_eq!(
        admin_get(port, "/metrics", b"authorization: Bearer second-token\r\n"),
        200
    );
    std::fs::remove_file(&token).unwrap();
    assert_eq!(
        admin_get(port, "/metrics", b"authorization: Bearer second-token\r\n"),
        401,
        "no file: nobody gets in"
    );
    assert_eq!(admin_get(port, "/readyz", b""), 200);
    drop(silt);

    let refused = Silt::try_start_with_env(&[("SILT_ADMIN_TOKEN_FILE", "/nonexistent/token")])
        .err()
        .expect("a missing token file stops the start");
    assert!(
        format!("{refused:#}").contains("admin_token_file"),
        "{refused:#}"
    );
}
