//! Every end-to-end test in one binary: one link of the full dependency set instead of one per
//! file, which keeps the debug build small enough for small CI disks and quicker to link.
//! Run one area with a filter, e.g. `cargo test -p silt-e2e --test e2e three_brokers::`.

mod cli;
mod cluster;
mod crash;
mod etcd;
mod groups;
mod hostile;
mod idempotence;
mod java_clients;
mod kcat;
mod operations;
mod protocol;
mod python_clients;
mod rdkafka_clients;
mod recovery;
mod security;
mod shutdown;
mod telemetry;
mod three_brokers;
mod tiering;
