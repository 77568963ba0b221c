//! InitProducerId for idempotent producers: a new cluster-unique producer id at epoch 0 on
//! every call, as Kafka does when there is no transactional id. Transactions are not supported:
//! a transactional id gets an error (their other APIs are not advertised either).
//! Authorization: WRITE on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); without
//! one, IDEMPOTENT_WRITE on the cluster or WRITE on some topic (CLUSTER_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: InitProducerIdRequest = decode(header, body)?;
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = if let Some(id) = &request.transactional_id {
        // Transactions are refused with this error whether or not the session may WRITE the
        // transactional id; the check is made all the same, for the authorizer's log.
        let _ = session.allowed(Operation::Write, ResourceType::TransactionalId, id.as_str());
        response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if !may_write_idempotently(broker, session) {
        response.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
    } else {
        match broker.next_producer_id().await {
            Ok(id) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(error) => {
                tracing::warn!(%error, "allocating a producer id failed");
                response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
            }
        }
    };
    Ok(frame(header, &response))
}

/// Kafka's rule for an idempotent producer (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE
/// on at least one topic.
fn may_write_idempotently(broker: &Broker, session: &Session) -> bool {
    session.may(
        Operation::IdempotentWrite,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) || broker
        .topics()
        .iter()
        .any(|t| session.may(Operation::Write, ResourceType::Topic, &t.record.name))
}
