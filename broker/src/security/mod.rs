//! Who a connection is and what it may do: TLS on listeners ([`tls`]), SASL authentication
//! ([`sasl`]) and ACLs ([`acl`]).
//!
//! Every request is handled with a [`Session`]: the listener it came in on, the peer, and the
//! principal (`User:ANONYMOUS` until SASL or a client certificate says otherwise). Handlers ask
//! the session whether an operation on a resource is allowed; with the authorizer off (the
//! default) everything is.

pub mod acl;
pub mod sasl;
pub mod tls;

use crate::config::SecurityProtocol;
use acl::{Authorizer, Operation, ResourceType};
use std::net::IpAddr;
use std::sync::Arc;

/// The principal of a connection that has not authenticated.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// One listener as connections see it.
#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
}

/// The identity and context a request is handled with.
#[derive(Clone)]
pub struct Session {
    /// `ip:port` of the client.
    pub peer: String,
    pub peer_ip: IpAddr,
    pub listener: Arc<Listener>,
    /// `User:alice`, `User:CN=client,O=Example`, or [`ANONYMOUS`].
    pub principal: Arc<str>,
    authorizer: Arc<Authorizer>,
    /// The connection's budget for response bytes not yet written to the client (see
    /// [`crate::api::frame::MAX_QUEUED_RESPONSE_BYTES`]): a Fetch reserves its response's bound
    /// here, in request order, and gives it back once its response is written.
    pub responses: Arc<tokio::sync::Semaphore>,
}

impl Session {
    pub fn new(
        peer: std::net::SocketAddr,
        listener: Arc<Listener>,
        principal: Arc<str>,
        authorizer: Arc<Authorizer>,
        responses: Arc<tokio::sync::Semaphore>,
    ) -> Session {
        Session {
            peer: peer.to_string(),
            peer_ip: peer.ip().to_canonical(),
            listener,
            principal,
            authorizer,
            responses,
        }
    }

    /// Whether this session may perform `operation` on the resource `name` of `resource`
    /// (the cluster's resource name is `kafka-cluster`). Logged at the configured levels.
    pub fn allowed(&self, operation: Operation, resource: ResourceType, name: &str) -> bool {
        self.authorizer
            .authorize(&self.principal, self.peer_ip, operation, resource, name)
    }

    /// [`Session::allowed`] without the log line: for questions the client did not ask
    /// (authorized-operations bit sets, filtering a listing).
    pub fn may(&self, operation: Operation, resource: ResourceType, name: &str) -> bool {
        self.authorizer
            .check(&self.principal, self.peer_ip, operation, resource, name)
    }

    /// Whether the cluster resource allows `operation`.
    pub fn allowed_on_cluster(&self, operation: Operation) -> bool {
        self.allowed(operation, ResourceType::Cluster, acl::CLUSTER_NAME)
    }

    /// Kafka's authorized-operations bit set: bit `op` set for each of `operations` allowed on
    /// the resource.
    pub fn authorized_operations(
        &self,
        resource: ResourceType,
        name: &str,
        operations: &[Operation],
    ) -> i32 {
        operations
            .iter()
            .filter(|op| self.may(**op, resource, name))
            .fold(0, |bits, op| bits | (1 << (*op as i32)))
    }

    /// Whether the authorizer is on (handlers may skip work that only filters).
    pub fn authorizing(&self) -> bool {
        self.authorizer.enabled()
    }

    /// A session for tests and internal callers: anonymous on a PLAINTEXT listener.
    pub fn anonymous(authorizer: Arc<Authorizer>) -> Session {
        Session {
            peer: "127.0.0.1:0".into(),
            peer_ip: IpAddr::from([127, 0, 0, 1]),
            listener: Arc::new(Listener {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
            }),
            principal: ANONYMOUS.into(),
            authorizer,
            responses: crate::api::frame::response_budget(),
        }
    }
}
