//! ApiVersions: advertises [`super::APIS`]. A request at a version we do not know gets
//! UNSUPPORTED_VERSION in the v0 layout, so the client can retry at a version we support.

use crate::api::frame::{frame, Frame};
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;

const MAX_VERSION: i16 = 3;

fn api_keys() -> Vec<ApiVersion> {
    super::APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min)
                .with_max_version(api.max)
        })
        .collect()
}

pub fn handle(header: &RequestHeader, body: &mut Bytes) -> Frame {
    let version = header.request_api_version;
    if !(0..=MAX_VERSION).contains(&version) {
        let response = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys());
        let mut v0 = header.clone();
        v0.request_api_version = 0;
        return frame(&v0, &response);
    }
    let error = match ApiVersionsRequest::decode(body, version) {
        Ok(_) => 0,
        Err(_) => ResponseError::InvalidRequest.code(),
    };
    let response = ApiVersionsResponse::default()
        .with_error_code(error)
        .with_api_keys(api_keys());
    // The ApiVersions response header is always v0 (frame() knows).
    frame(header, &response)
}
