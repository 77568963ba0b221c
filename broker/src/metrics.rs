//! The broker's Prometheus metrics, named `silt_broker_<noun>_<unit>` (and `silt_tiering_*` for
//! the object-storage work the broker drives), with labels from bounded sets (API names,
//! object-store operations; topic names, which the operator controls). Served on the admin
//! port at `/metrics`.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

pub struct Metrics {
    registry: Registry,
    pub request_duration: HistogramVec,
    pub requests: IntCounterVec,
    pub connections: IntGauge,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub wal_fsync_duration: Histogram,
    pub wal_sync_bytes: Histogram,
    pub partitions: IntGauge,
    pub group_offset_writes: IntCounterVec,
    pub group_lag: prometheus::IntGaugeVec,
    pub upload_lag_bytes: IntGauge,
    pub upload_lag_seconds: prometheus::Gauge,
    pub object_store_requests: IntCounterVec,
    pub object_store_bytes: IntCounterVec,
    pub object_store_duration: HistogramVec,
    pub cache_hits: prometheus::IntCounter,
    pub cache_misses: prometheus::IntCounter,
    pub wal_objects: prometheus::IntCounter,
    pub unrecorded_offsets_dropped: prometheus::IntCounter,
    pub segments_uploaded: prometheus::IntCounter,
    pub tls_handshake_failures: prometheus::IntCounter,
    pub authentications: IntCounterVec,
    pub authorization_denied: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let latency = exponential_buckets(0.0001, 2.0, 20)?;
    let m = Metrics {
        request_duration: HistogramVec::new(
            HistogramOpts::new(
                "silt_broker_request_duration_seconds",
                "Time from a request's arrival to its response, by API",
            )
            .buckets(latency.clone()),
            &["api"],
        )?,
        requests: IntCounterVec::new(
            Opts::new("silt_broker_requests_total", "Requests handled, by API"),
            &["api"],
        )?,
        connections: IntGauge::new("silt_broker_connections_active", "Open Kafka connections")?,
        tls_handshake_failures: prometheus::IntCounter::new(
            "silt_broker_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out",
        )?,
        authentications: IntCounterVec::new(
            Opts::new(
                "silt_broker_sasl_authentications_total",
                "SASL authentications, by mechanism and result (success, failure)",
            ),
            &["mechanism", "result"],
        )?,
        authorization_denied: IntCounterVec::new(
            Opts::new(
                "silt_broker_authorization_denied_total",
                "Requests or parts of requests the authorizer denied, by resource type",
            ),
            &["resource"],
        )?,
        bytes_in: IntCounterVec::new(
            Opts::new(
                "silt_broker_bytes_in_total",
                "Record batch bytes appended, by topic",
            ),
            &["topic"],
        )?,
        bytes_out: IntCounterVec::new(
            Opts::new(
                "silt_broker_bytes_out_total",
                "Record batch bytes sent to consumers, by topic",
            ),
            &["topic"],
        )?,
        records_in: IntCounterVec::new(
            Opts::new("silt_broker_records_in_total", "Records appended, by topic"),
            &["topic"],
        )?,
        records_out: IntCounterVec::new(
            Opts::new(
                "silt_broker_records_out_total",
                "Records sent to consumers, by topic",
            ),
            &["topic"],
        )?,
        wal_fsync_duration: Histogram::with_opts(
            HistogramOpts::new(
                "silt_broker_wal_fsync_duration_seconds",
                "Duration of one WAL write and fdatasync",
            )
            .buckets(latency),
        )?,
        wal_sync_bytes: Histogram::with_opts(
            HistogramOpts::new(
                "silt_broker_wal_sync_bytes",
                "Bytes made durable by one WAL sync (the size of a group commit)",
            )
            .buckets(exponential_buckets(256.0, 4.0, 12)?),
        )?,
        partitions: IntGauge::new("silt_broker_partitions_led", "Partitions this broker leads")?,
        group_offset_writes: IntCounterVec::new(
            Opts::new(
                "silt_broker_group_offset_writes_total",
                "Metadata-store writes of group offsets, by outcome",
            ),
            &["outcome"],
        )?,
        group_lag: prometheus::IntGaugeVec::new(
            Opts::new(
                "silt_broker_consumer_group_lag_records",
                "Records between a group's committed offsets and the high watermarks of the \
                 partitions this broker leads (sum over brokers for the group's lag); only for \
                 the groups telemetry.lag_groups names",
            ),
            &["group"],
        )?,
        upload_lag_bytes: IntGauge::new(
            "silt_tiering_upload_lag_bytes",
            "Bytes written locally and not yet recorded in the bucket",
        )?,
        upload_lag_seconds: prometheus::Gauge::new(
            "silt_tiering_upload_lag_seconds",
            "Age of the oldest data not yet recorded in the bucket",
        )?,
        object_store_requests: IntCounterVec::new(
            Opts::new(
                "silt_tiering_object_store_requests_total",
                "Object-store requests, by operation and outcome",
            ),
            &["op", "outcome"],
        )?,
        object_store_bytes: IntCounterVec::new(
            Opts::new(
                "silt_tiering_object_store_bytes_total",
                "Bytes sent to or received from the object store, by operation",
            ),
            &["op"],
        )?,
        object_store_duration: HistogramVec::new(
            HistogramOpts::new(
                "silt_tiering_object_store_request_duration_seconds",
                "Object-store request latency, by operation",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 16)?),
            &["op"],
        )?,
        cache_hits: prometheus::IntCounter::new(
            "silt_tiering_cache_hits_total",
            "Reads from the bucket answered by the read cache (blocks)",
        )?,
        cache_misses: prometheus::IntCounter::new(
            "silt_tiering_cache_misses_total",
            "Reads from the bucket that needed a GET (blocks)",
        )?,
        wal_objects: prometheus::IntCounter::new(
            "silt_tiering_wal_objects_total",
            "WAL objects uploaded and recorded",
        )?,
        unrecorded_offsets_dropped: prometheus::IntCounter::new(
            "silt_tiering_unrecorded_offsets_dropped_total",
            "Offsets of local data never recorded in the bucket that a takeover dropped (another term may have written them)",
        )?,
        segments_uploaded: prometheus::IntCounter::new(
            "silt_tiering_segments_uploaded_total",
            "Segment objects uploaded and added to a manifest",
        )?,
        registry,
    };
    m.registry.register(Box::new(m.upload_lag_bytes.clone()))?;
    m.registry
        .register(Box::new(m.upload_lag_seconds.clone()))?;
    m.registry
        .register(Box::new(m.object_store_requests.clone()))?;
    m.registry
        .register(Box::new(m.object_store_bytes.clone()))?;
    m.registry
        .register(Box::new(m.object_store_duration.clone()))?;
    m.registry.register(Box::new(m.cache_hits.clone()))?;
    m.registry.register(Box::new(m.cache_misses.clone()))?;
    m.registry.register(Box::new(m.wal_objects.clone()))?;
    m.registry.register(Box::new(m.segments_uploaded.clone()))?;
    m.registry
        .register(Box::new(m.unrecorded_offsets_dropped.clone()))?;
    m.registry.register(Box::new(m.request_duration.clone()))?;
    m.registry.register(Box::new(m.requests.clone()))?;
    m.registry.register(Box::new(m.connections.clone()))?;
    m.registry.register(Box::new(m.bytes_in.clone()))?;
    m.registry.register(Box::new(m.bytes_out.clone()))?;
    m.registry.register(Box::new(m.records_in.clone()))?;
    m.registry.register(Box::new(m.records_out.clone()))?;
    m.registry
        .register(Box::new(m.wal_fsync_duration.clone()))?;
    m.registry.register(Box::new(m.wal_sync_bytes.clone()))?;
    m.registry.register(Box::new(m.partitions.clone()))?;
    m.registry
        .register(Box::new(m.group_offset_writes.clone()))?;
    m.registry.register(Box::new(m.group_lag.clone()))?;
    m.registry
        .register(Box::new(m.tls_handshake_failures.clone()))?;
    m.registry.register(Box::new(m.authentications.clone()))?;
    m.registry
        .register(Box::new(m.authorization_denied.clone()))?;
    Ok(m)
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| build().expect("metric definitions are valid"))
}

/// Every metric's current values (what `/metrics` renders and OTLP pushes).
pub fn gather() -> Vec<prometheus::proto::MetricFamily> {
    metrics().registry.gather()
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&gather(), &mut out) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Records in a run of record batches (header walk only).
pub fn count_records(batches: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut at = 0;
    while let Some(h) = crate::log::batch::BatchHeader::parse(&batches[at..]) {
        n += h.record_count.max(0) as u64;
        at += h.total_size();
        if at >= batches.len() {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dashboard_uses_only_exported_metrics() {
        let m = super::metrics();
        m.group_offset_writes.with_label_values(&["ok"]).inc();
        m.group_lag.with_label_values(&["g"]).set(1);
        m.requests.with_label_values(&["Produce"]).inc();
        m.request_duration
            .with_label_values(&["Produce"])
            .observe(0.1);
        for v in [&m.bytes_in, &m.bytes_out, &m.records_in, &m.records_out] {
            v.with_label_values(&["t"]).inc();
        }
        m.object_store_requests
            .with_label_values(&["get", "ok"])
            .inc();
        m.object_store_bytes.with_label_values(&["get"]).inc();
        m.object_store_duration
            .with_label_values(&["get"])
            .observe(0.01);
        let exported: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let dashboard = include_str!("../../deploy/grafana/silt.json");
        let mut used = 0;
        let uses = dashboard
            .match_indices("silt_broker_")
            .chain(dashboard.match_indices("silt_tiering_"));
        for (i, _) in uses {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exported.iter().any(|e| e == base),
                "the dashboard uses {name}, not exported: {exported:?}"
            );
            used += 1;
        }
        assert!(used >= 20);
    }

    #[test]
    fn every_metric_is_named_by_its_crate() {
        let m = super::metrics();
        m.requests.with_label_values(&["Produce"]).inc();
        m.bytes_in.with_label_values(&["t"]).inc();
        m.bytes_out.with_label_values(&["t"]).inc();
        m.records_in.with_label_values(&["t"]).inc();
        m.records_out.with_label_values(&["t"]).inc();
        m.request_duration
            .with_label_values(&["Produce"])
            .observe(0.001);
        m.group_offset_writes.with_label_values(&["ok"]).inc();
        m.object_store_requests
            .with_label_values(&["put", "ok"])
            .inc();
        m.object_store_bytes.with_label_values(&["put"]).inc();
        m.object_store_duration
            .with_label_values(&["put"])
            .observe(0.01);
        let text = super::render();
        let mut tiering = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                name.starts_with("silt_broker_") || name.starts_with("silt_tiering_"),
                "{name}"
            );
            tiering += usize::from(name.starts_with("silt_tiering_"));
        }
        assert!(
            tiering >= 8,
            "upload lag, object-store requests, cache: {text}"
        );
    }
}
