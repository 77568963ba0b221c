//! What an operator relies on: health and readiness endpoints, JSON logs.

use silt_e2e::{http_get, Silt};

#[test]
fn health_and_readiness_follow_the_broker() {
    let mut silt = Silt::start();
    assert_eq!(
        http_get(silt.admin_port, "/healthz").map(|r| r.0),
        Some(200)
    );
    assert_eq!(http_get(silt.admin_port, "/readyz").map(|r| r.0), Some(200));
    assert_eq!(http_get(silt.admin_port, "/nope").map(|r| r.0), Some(404));
    silt.stop();
    assert!(
        http_get(silt.admin_port, "/readyz").is_none_or(|r| r.0 != 200),
        "not ready once stopped"
    );
    silt.restart();
    assert_eq!(
        http_get(silt.admin_port, "/readyz").map(|r| r.0),
        Some(200),
        "ready again after a restart"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let silt = Silt::start_with_env(&[("SILT_LOG_FORMAT", "json")]);
    let log = silt.log();
    let ready = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v["fields"]["message"] == "silt broker ready")
        .unwrap_or_else(|| panic!("a JSON 'ready' line in:\n{log}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["fields"]["listen"], silt.bootstrap());
}
