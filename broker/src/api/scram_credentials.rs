//! DescribeUserScramCredentials and AlterUserScramCredentials (v0): SCRAM users in the
//! metadata store. Describing needs DESCRIBE on the cluster, altering needs ALTER on it. The
//! client sends a salted password (it runs PBKDF2 itself); the broker keeps the stored key
//! and server key derived from it, never a password.

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::sasl::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub async fn describe(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DescribeUserScramCredentialsRequest = decode(header, body)?;
    let response = DescribeUserScramCredentialsResponse::default();
    if !session.allowed_on_cluster(Operation::Describe) {
        return Ok(frame(
            header,
            &response.with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        ));
    }
    let all = match broker.credentials.list().await {
        Ok(all) => all,
        Err(error) => {
            return Ok(frame(
                header,
                &response
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            ))
        }
    };
    let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
    for (user, mechanism, iterations) in all {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(mechanism.scram_code())
                .with_iterations(iterations),
        );
    }
    let result = |user: &str| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
    };
    let results = match request.users.filter(|users| !users.is_empty()) {
        // Every user with a credential (null or empty, as in Kafka).
        None => by_user
            .iter()
            .map(|(user, infos)| result(user).with_credential_infos(infos.clone()))
            .collect(),
        Some(users) => {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for u in &users {
                *seen.entry(u.name.to_string()).or_default() += 1;
            }
            users
                .iter()
                .map(|u| {
                    let name = u.name.to_string();
                    if seen[&name] > 1 {
                        return result(&name)
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "user named more than once",
                            )));
                    }
                    match by_user.get(&name) {
                        Some(infos) => result(&name).with_credential_infos(infos.clone()),
                        None => result(&name)
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "attempt to describe a user credential that does not exist: {name}"
                            )))),
                    }
                })
                .collect()
        }
    };
    Ok(frame(header, &response.with_results(results)))
}

pub async fn alter(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: AlterUserScramCredentialsRequest = decode(header, body)?;
    let result = |user: &str, error: ResponseError, message: Option<String>| {
        AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
            .with_error_code(error.code())
            .with_error_message(message.map(StrBytes::from_string))
    };
    let mut users: Vec<String> = Vec::new();
    let mut counts: HashMap<(String, i8), usize> = HashMap::new();
    for (name, mechanism) in request
        .deletions
        .iter()
        .map(|d| (&d.name, d.mechanism))
        .chain(request.upsertions.iter().map(|u| (&u.name, u.mechanism)))
    {
        let name = name.to_string();
        if !users.contains(&name) {
            users.push(name.clone());
        }
        *counts.entry((name, mechanism)).or_default() += 1;
    }
    if !session.allowed_on_cluster(Operation::Alter) {
        let results = users
            .iter()
            .map(|u| result(u, ResponseError::ClusterAuthorizationFailed, None))
            .collect();
        return Ok(frame(
            header,
            &AlterUserScramCredentialsResponse::default().with_results(results),
        ));
    }
    // One result per user: the first problem found, else the outcome of its changes.
    let mut outcome: HashMap<String, (ResponseError, Option<String>)> = HashMap::new();
    let mut fail = |user: &str, error: ResponseError, message: String| {
        outcome
            .entry(user.to_string())
            .or_insert((error, Some(message)));
    };
    for ((user, _), n) in &counts {
        if user.is_empty() {
            fail(
                user,
                ResponseError::UnacceptableCredential,
                "empty user name".into(),
            );
        } else if *n > 1 {
            fail(
                user,
                ResponseError::DuplicateResource,
                "a user's mechanism appears more than once in one request".into(),
            );
        }
    }
    for d in &request.deletions {
        if Mechanism::from_scram_code(d.mechanism).is_none() {
            fail(
                d.name.as_str(),
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", d.mechanism),
            );
        }
    }
    for u in &request.upsertions {
        let name = u.name.as_str();
        match Mechanism::from_scram_code(u.mechanism) {
            None => fail(
                name,
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", u.mechanism),
            ),
            Some(_) if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) => fail(
                name,
                ResponseError::UnacceptableCredential,
                format!(
                    "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, got {}",
                    u.iterations
                ),
            ),
            Some(m) if u.salt.is_empty() || u.salted_password.len() != m_len(m) => fail(
                name,
                ResponseError::UnacceptableCredential,
                "a credential needs a salt and a salted password of the mechanism's length".into(),
            ),
            Some(_) => {}
        }
    }
    for d in &request.deletions {
        let name = d.name.as_str();
        if outcome.contains_key(name) {
            continue;
        }
        let Some(mechanism) = Mechanism::from_scram_code(d.mechanism) else {
            continue;
        };
        match broker.credentials.delete(name, mechanism).await {
            Ok(true) => {
                tracing::info!(principal = %session.principal, user = name, mechanism = mechanism.name(), "SCRAM credential deleted");
            }
            Ok(false) => {
                outcome.insert(
                    name.to_string(),
                    (
                        ResponseError::ResourceNotFound,
                        Some(format!(
                            "attempt to delete a user credential that does not exist: {name} {}",
                            mechanism.name()
                        )),
                    ),
                );
            }
            Err(e) => {
                outcome.insert(
                    name.to_string(),
                    (ResponseError::UnknownServerError, Some(e.to_string())),
                );
            }
        }
    }
    for u in &request.upsertions {
        let name = u.name.as_str();
        if outcome.contains_key(name) {
            continue;
        }
        let Some(mechanism) = Mechanism::from_scram_code(u.mechanism) else {
            continue;
        };
        let credential = ScramCredential::from_salted_password(
            mechanism,
            u.salt.to_vec(),
            &u.salted_password,
            u.iterations as u32,
        );
        match broker.credentials.put(name, mechanism, &credential).await {
            Ok(()) => {
                tracing::info!(principal = %session.principal, user = name, mechanism = mechanism.name(), iterations = u.iterations, "SCRAM credential set");
            }
            Err(e) => {
                outcome.insert(
                    name.to_string(),
                    (ResponseError::UnknownServerError, Some(e.to_string())),
                );
            }
        }
    }
    let results = users
        .iter()
        .map(|u| match outcome.remove(u) {
            Some((error, message)) => result(u, error, message),
            None => AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(u.clone())),
        })
        .collect();
    Ok(frame(
        header,
        &AlterUserScramCredentialsResponse::default().with_results(results),
    ))
}

/// The salted password's length for a mechanism (its hash's output).
fn m_len(mechanism: Mechanism) -> usize {
    match mechanism {
        Mechanism::ScramSha512 => 64,
        _ => 32,
    }
}
