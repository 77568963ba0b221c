//! The one place the broker's errors become Kafka error codes: partition and batch errors
//! (produce, fetch, list offsets, delete records), group errors (the consumer-group APIs) and
//! admin errors (topic and config changes).

use crate::broker::AdminError;
use crate::group::GroupError;
use crate::log::batch::BatchError;
use crate::log::partition::PartitionError;
use crate::log::producer::SequenceError;
use kafka_protocol::ResponseError;

/// A partition-level error.
pub fn partition_code(error: &PartitionError) -> ResponseError {
    match error {
        PartitionError::Deleted(_) => ResponseError::UnknownTopicOrPartition,
        PartitionError::NotLeader(_) => ResponseError::NotLeaderOrFollower,
        PartitionError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        PartitionError::Io { .. } | PartitionError::Wal(_) => ResponseError::KafkaStorageError,
        PartitionError::Batch(b) => batch_code(b),
        PartitionError::Sequence(SequenceError::InvalidEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        PartitionError::Sequence(SequenceError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
    }
}

/// A record batch a produce request carried.
pub fn batch_code(error: &BatchError) -> ResponseError {
    match error {
        BatchError::Corrupt(_) => ResponseError::CorruptMessage,
        BatchError::InvalidRecord(_) => ResponseError::InvalidRecord,
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::Unsupported(_) => ResponseError::InvalidRecord,
    }
}

/// A group coordinator error.
pub fn group_code(e: GroupError) -> i16 {
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

/// An admin operation's error, with its message.
pub fn admin_error(e: AdminError) -> (ResponseError, String) {
    let code = match &e {
        AdminError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        AdminError::InvalidConfig(_) => ResponseError::InvalidConfig,
        AdminError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        AdminError::Internal(_) => ResponseError::UnknownServerError,
    };
    (code, e.to_string())
}
