//! InitProducerId for idempotent producers: a new cluster-unique producer id at epoch 0 on
//! every call, as Kafka does when there is no transactional id. Transactions are not supported:
//! a transactional id gets an error (their other APIs are not advertised either).

use crate::broker::Broker;
use crate::server::{decode, frame, Frame};
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
) -> anyhow::Result<Frame> {
    let request: InitProducerIdRequest = decode(header, body)?;
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = if request.transactional_id.is_some() {
        response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
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
