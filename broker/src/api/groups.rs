//! Shared by the consumer-group APIs: group errors as Kafka codes.

use crate::group::GroupError;
use kafka_protocol::ResponseError;

pub fn code(e: GroupError) -> i16 {
    let r = match e {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::RequestTimedOut => ResponseError::RequestTimedOut,
        GroupError::MetadataTooLarge => ResponseError::InvalidRequest,
        GroupError::OffsetsTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
    };
    r.code()
}
