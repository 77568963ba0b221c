//! OTLP export, when a collector is configured (`telemetry.otlp_endpoint`, else
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), over OTLP/HTTP with protobuf bodies:
//!
//! - **Traces**: every Kafka request is the root of a trace, a span named after its API
//!   (`Produce`, `Fetch`, ...) with the API version, correlation id, client id and peer; the
//!   partition work inside it (`partition` spans with topic and partition) are its children.
//!   The tracing spans go through `tracing-opentelemetry` to the SDK's batch processor
//!   (bounded queue: spans are dropped, never waited for, when the collector is slow), sampled
//!   at `telemetry.trace_sample_ratio`.
//! - **Metrics**: the Prometheus registry served at `/metrics` is converted to OTLP (counters
//!   as cumulative monotonic sums, gauges as gauges, histograms with the same bucket bounds)
//!   and pushed every `telemetry.otlp_metrics_interval_ms`, under the same names. One registry,
//!   two ways out: a series cannot differ between the scrape and the push.
//!
//! Both carry the resource `service.name` (`OTEL_SERVICE_NAME`, default `silt`),
//! `service.instance.id` (the node id), `service.version` and `OTEL_RESOURCE_ATTRIBUTES`.
//! Headers for both come from `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,key=value`).

use anyhow::Context as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use prometheus::proto::{MetricFamily, MetricType};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Longest wait for the collector on one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The collector's base URL, without a trailing `/`, if one is configured.
pub fn endpoint(configured: Option<&str>) -> Option<String> {
    let from_env = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    configured
        .map(str::to_string)
        .or(from_env)
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
}

/// Refuses an OTLP protocol other than `http/protobuf`, the only one built in.
pub fn check_protocol() -> anyhow::Result<()> {
    for var in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var) {
            anyhow::ensure!(
                p.trim().is_empty() || p.trim() == "http/protobuf",
                "{var}={p}: silt exports OTLP over http/protobuf only (the collector's port 4318)"
            );
        }
    }
    Ok(())
}

/// The resource both signals carry.
pub fn resource(node_id: i32) -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "silt".to_string());
    Resource::builder()
        .with_service_name(name)
        .with_attributes([
            opentelemetry::KeyValue::new("service.instance.id", node_id.to_string()),
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build()
}

/// The tracer provider exporting to `{endpoint}/v1/traces`. Build it outside the async
/// runtime (the exporter's blocking HTTP client runs on the batch processor's thread), and
/// shut it down after the runtime stops, which flushes the spans still queued.
pub fn tracer_provider(
    endpoint: &str,
    sample_ratio: f64,
    resource: Resource,
) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("OTLP trace exporter for {endpoint}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Whether the OTLP layer takes a span or event: this crate's and its siblings' at debug and
/// above, except the connection span (a request is the root of its own trace, not a child of
/// a connection that lives for hours).
pub fn traced(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("silt")
        && *meta.level() <= tracing::Level::DEBUG
        && !(meta.is_span() && meta.name() == "conn")
}

/// `OTEL_EXPORTER_OTLP_HEADERS` (or the metrics-specific variable) as pairs.
fn headers() -> Vec<(String, String)> {
    let raw = std::env::var("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    raw.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), v.trim().replace("%20", " ")))
        })
        .collect()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Pushes the metrics to `{endpoint}/v1/metrics` every `every` until cancelled, then once more.
/// A failed push is logged (once per outage) and the next one goes ahead on time.
pub async fn push_metrics(
    endpoint: String,
    every: Duration,
    resource: Resource,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "cannot build the OTLP metrics client; no metrics are pushed");
            return;
        }
    };
    let url = format!("{endpoint}/v1/metrics");
    let headers = headers();
    let resource = proto_resource(&resource);
    let start = now_ns();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let last = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tick.tick() => false,
        };
        let body = prost::Message::encode_to_vec(&export_request(
            &crate::metrics::gather(),
            resource.clone(),
            start,
            now_ns(),
        ));
        let mut request = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body);
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let outcome = match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the collector answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) if failing => {
                tracing::info!(%url, "pushing metrics over OTLP works again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(%url, %error, "pushing metrics over OTLP failed; retrying every interval");
                failing = true;
            }
            Err(error) => tracing::debug!(%url, %error, "pushing metrics over OTLP failed"),
        }
        if last {
            return;
        }
    }
}

fn string_value(s: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn proto_resource(resource: &Resource) -> opentelemetry_proto::tonic::resource::v1::Resource {
    let attributes = resource
        .iter()
        .map(|(k, v)| {
            let value = match v {
                opentelemetry::Value::Bool(b) => Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(*b)),
                }),
                opentelemetry::Value::I64(i) => Some(AnyValue {
                    value: Some(any_value::Value::IntValue(*i)),
                }),
                opentelemetry::Value::F64(f) => Some(AnyValue {
                    value: Some(any_value::Value::DoubleValue(*f)),
                }),
                other => string_value(other.to_string()),
            };
            KeyValue {
                key: k.to_string(),
                value,
                ..Default::default()
            }
        })
        .collect();
    opentelemetry_proto::tonic::resource::v1::Resource {
        attributes,
        ..Default::default()
    }
}

/// The OTLP unit of a metric, from its name's unit suffix.
fn unit(name: &str) -> &'static str {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_bytes") {
        "By"
    } else {
        "1"
    }
}

/// The registry's metric families as one OTLP export request.
pub fn export_request(
    families: &[MetricFamily],
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    start_ns: u64,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = families
        .iter()
        .filter_map(|family| {
            let points = family.get_metric();
            let attributes = |m: &prometheus::proto::Metric| -> Vec<KeyValue> {
                m.get_label()
                    .iter()
                    .map(|l| KeyValue {
                        key: l.name().to_string(),
                        value: string_value(l.value()),
                        ..Default::default()
                    })
                    .collect()
            };
            let number = |m: &prometheus::proto::Metric, v: f64| NumberDataPoint {
                attributes: attributes(m),
                start_time_unix_nano: start_ns,
                time_unix_nano: now_ns,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            };
            let data = match family.get_field_type() {
                MetricType::COUNTER => metric::Data::Sum(Sum {
                    data_points: points
                        .iter()
                        .map(|m| number(m, m.get_counter().get_value()))
                        .collect(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                MetricType::GAUGE => metric::Data::Gauge(Gauge {
                    data_points: points
                        .iter()
                        .map(|m| number(m, m.get_gauge().get_value()))
                        .collect(),
                }),
                MetricType::HISTOGRAM => metric::Data::Histogram(Histogram {
                    data_points: points
                        .iter()
                        .map(|m| {
                            let h = m.get_histogram();
                            // Prometheus buckets are cumulative and leave out +Inf; OTLP's
                            // count each bucket alone and end with the one above the last bound.
                            let mut bounds = Vec::new();
                            let mut counts = Vec::new();
                            let mut below = 0u64;
                            for b in h.get_bucket() {
                                if b.upper_bound().is_infinite() {
                                    continue;
                                }
                                bounds.push(b.upper_bound());
                                counts.push(b.cumulative_count().saturating_sub(below));
                                below = below.max(b.cumulative_count());
                            }
                            counts.push(h.get_sample_count().saturating_sub(below));
                            HistogramDataPoint {
                                attributes: attributes(m),
                                start_time_unix_nano: start_ns,
                                time_unix_nano: now_ns,
                                count: h.get_sample_count(),
                                sum: Some(h.get_sample_sum()),
                                bucket_counts: counts,
                                explicit_bounds: bounds,
                                ..Default::default()
                            }
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                }),
                // The registry has no summaries or untyped metrics.
                _ => return None,
            };
            Some(Metric {
                name: family.name().to_string(),
                description: family.help().to_string(),
                unit: unit(family.name()).to_string(),
                data: Some(data),
                ..Default::default()
            })
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "silt".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

    #[test]
    fn counters_and_histograms_convert_with_their_values() {
        let registry = Registry::new();
        let c = IntCounterVec::new(Opts::new("silt_x_things_total", "things"), &["topic"]).unwrap();
        let h = Histogram::with_opts(
            HistogramOpts::new("silt_x_wait_seconds", "waits").buckets(vec![0.1, 1.0]),
        )
        .unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        registry.register(Box::new(h.clone())).unwrap();
        c.with_label_values(&["a"]).inc_by(7);
        for v in [0.05, 0.5, 0.6, 5.0] {
            h.observe(v);
        }
        let request = export_request(&registry.gather(), Default::default(), 1, 2);
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let by_name = |n: &str| metrics.iter().find(|m| m.name == n).unwrap();
        let Some(metric::Data::Sum(sum)) = &by_name("silt_x_things_total").data else {
            panic!("a counter is a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 1);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(7.0))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "topic");
        let m = by_name("silt_x_wait_seconds");
        assert_eq!(m.unit, "s");
        let Some(metric::Data::Histogram(hist)) = &m.data else {
            panic!("a histogram stays one")
        };
        let p = &hist.data_points[0];
        assert_eq!(p.explicit_bounds, vec![0.1, 1.0]);
        assert_eq!(p.bucket_counts, vec![1, 2, 1]);
        assert_eq!(p.count, 4);
        assert_eq!(p.sum, Some(0.05 + 0.5 + 0.6 + 5.0));
    }

    #[test]
    fn endpoint_is_trimmed_and_empty_means_none() {
        assert_eq!(
            endpoint(Some("http://c:4318/")).as_deref(),
            Some("http://c:4318")
        );
        assert_eq!(endpoint(Some("  ")), None);
    }
}
