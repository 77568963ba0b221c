//! DescribeCluster: cluster id, controller and brokers (the AdminClient's describeCluster), by
//! their address on the listener the client connected to. Authorization: as in Kafka, none is
//! needed; the authorized operations, when asked for, are 0 without DESCRIBE on the cluster.

use super::metadata::cluster_authorized_operations;
use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// DescribeCluster's endpoint types: brokers (1) or controllers (2).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DescribeClusterRequest = decode(header, body)?;
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(
            broker.controller.load(std::sync::atomic::Ordering::Relaxed),
        ))
        .with_brokers(
            broker
                .live_brokers()
                .into_iter()
                .map(|b| {
                    let (host, port) = b.endpoint(&session.listener.name);
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node.0))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(cluster_authorized_operations(
            session,
            request.include_cluster_authorized_operations,
        ));
    if header.request_api_version >= 1 {
        if request.endpoint_type != ENDPOINT_BROKERS {
            response = response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_brokers(Vec::new());
        }
        response = response.with_endpoint_type(ENDPOINT_BROKERS);
    }
    Ok(frame(header, &response))
}
