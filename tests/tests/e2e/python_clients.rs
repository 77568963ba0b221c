//! confluent-kafka (Python, with a current librdkafka bundled) against a real `silt`.

use silt_e2e::{run, Silt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn confluent_kafka_round_trip_every_codec() {
    let silt = Silt::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/roundtrip.py");
    let (ok, out, err) = run(
        Command::new("python3")
            .arg(script)
            .arg(silt.bootstrap())
            .arg("py")
            .arg("500"),
        Duration::from_secs(300),
    )
    .expect("python3 ran");
    assert!(
        ok && out.contains("\"ok\": true"),
        "{out}\n{err}\nbroker log:\n{}",
        silt.log()
    );
}

#[test]
fn kafka_python_admin_client() {
    let silt = Silt::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/admin.py");
    let (ok, out, err) = run(
        Command::new("python3")
            .arg(script)
            .arg(silt.bootstrap())
            .arg("kp-admin"),
        Duration::from_secs(120),
    )
    .expect("python3 ran");
    assert!(
        ok && out.contains("\"ok\": true"),
        "{out}\n{err}\nbroker log:\n{}",
        silt.log()
    );
}
