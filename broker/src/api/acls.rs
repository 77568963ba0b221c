//! CreateAcls, DescribeAcls and DeleteAcls (v1–3). Creating and deleting need ALTER on the
//! cluster, describing needs DESCRIBE on it (CLUSTER_AUTHORIZATION_FAILED otherwise). With
//! the authorizer off the ACLs are still stored and listed, as Kafka's are; they take effect
//! when it is turned on.

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A filter from DescribeAcls or DeleteAcls fields, or why it is invalid.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("unknown resource type {resource_type}"))?,
        resource_name: name.map(|n| n.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| format!("unknown pattern type {pattern_type}"))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: Operation::from_code(operation)
            .ok_or_else(|| format!("unknown operation {operation}"))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| format!("unknown permission type {permission}"))?,
    })
}

pub async fn create(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: CreateAclsRequest = decode(header, body)?;
    let result = |error: ResponseError, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(error.code())
            .with_error_message(message.map(StrBytes::from_string))
    };
    if !session.allowed_on_cluster(Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| result(ResponseError::ClusterAuthorizationFailed, None))
            .collect();
        return Ok(frame(
            header,
            &CreateAclsResponse::default().with_results(results),
        ));
    }
    // Valid bindings are stored together; each creation gets its own result.
    let mut outcomes: Vec<Result<AclBinding, String>> = Vec::new();
    for c in &request.creations {
        let binding = (|| {
            let b = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or("unknown resource type")?,
                resource_name: c.resource_name.to_string(),
                pattern_type: PatternType::from_code(c.resource_pattern_type)
                    .ok_or("unknown pattern type")?,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation).ok_or("unknown operation")?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or("unknown permission type")?,
            };
            b.validate().map_err(|e| e.0)?;
            Ok::<_, String>(b)
        })();
        outcomes.push(binding.map_err(|e| e.to_string()));
    }
    let valid: Vec<AclBinding> = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        broker.authorizer.create(&valid).await
    };
    let results = outcomes
        .into_iter()
        .map(|o| match (o, &stored) {
            (Err(message), _) => result(ResponseError::InvalidRequest, Some(message)),
            (Ok(_), Err(error)) => {
                result(ResponseError::UnknownServerError, Some(error.to_string()))
            }
            (Ok(b), Ok(())) => {
                tracing::info!(principal = %session.principal, acl = ?b, "ACL created");
                AclCreationResult::default()
            }
        })
        .collect();
    Ok(frame(
        header,
        &CreateAclsResponse::default().with_results(results),
    ))
}

pub fn describe(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let r: DescribeAclsRequest = decode(header, body)?;
    let response = DescribeAclsResponse::default();
    if !session.allowed_on_cluster(Operation::Describe) {
        return Ok(frame(
            header,
            &response.with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        ));
    }
    let f = match filter(
        r.resource_type_filter,
        r.resource_name_filter.as_ref(),
        r.pattern_type_filter,
        r.principal_filter.as_ref(),
        r.host_filter.as_ref(),
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(message) => {
            return Ok(frame(
                header,
                &response
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            ))
        }
    };
    // Grouped by resource, as Kafka answers.
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in broker.authorizer.describe(&f) {
        by_resource
            .entry((
                b.resource_type as i8,
                b.resource_name.clone(),
                b.pattern_type as i8,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(text(&b.principal))
                    .with_host(text(&b.host))
                    .with_operation(b.operation as i8)
                    .with_permission_type(b.permission as i8),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pt)
                .with_acls(acls)
        })
        .collect();
    Ok(frame(header, &response.with_resources(resources)))
}

pub async fn delete(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DeleteAclsRequest = decode(header, body)?;
    let failed = |error: ResponseError, message: Option<String>| {
        DeleteAclsFilterResult::default()
            .with_error_code(error.code())
            .with_error_message(message.map(StrBytes::from_string))
    };
    if !session.allowed_on_cluster(Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(ResponseError::ClusterAuthorizationFailed, None))
            .collect();
        return Ok(frame(
            header,
            &DeleteAclsResponse::default().with_filter_results(results),
        ));
    }
    let parsed: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let deleted = broker.authorizer.delete(&valid).await;
    let mut deleted_iter = match &deleted {
        Ok(per_filter) => per_filter.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = parsed
        .into_iter()
        .map(|p| match (p, &deleted) {
            (Err(message), _) => failed(ResponseError::InvalidRequest, Some(message)),
            (Ok(_), Err(error)) => {
                failed(ResponseError::UnknownServerError, Some(error.to_string()))
            }
            (Ok(_), Ok(_)) => {
                let matching = deleted_iter
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        tracing::info!(principal = %session.principal, acl = ?b, "ACL deleted");
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type as i8)
                            .with_resource_name(text(&b.resource_name))
                            .with_pattern_type(b.pattern_type as i8)
                            .with_principal(text(&b.principal))
                            .with_host(text(&b.host))
                            .with_operation(b.operation as i8)
                            .with_permission_type(b.permission as i8)
                    })
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(matching)
            }
        })
        .collect();
    Ok(frame(
        header,
        &DeleteAclsResponse::default().with_filter_results(results),
    ))
}
