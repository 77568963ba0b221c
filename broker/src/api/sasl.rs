//! SaslHandshake (v1) and SaslAuthenticate (v0–2): the connection's authentication state.
//!
//! On a SASL listener a connection may send only ApiVersions, SaslHandshake and
//! SaslAuthenticate until it has authenticated. A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED after `sasl.failed_authentication_delay_ms` and the connection
//! is closed, so each connection gets one wrong guess; a connection may start at most
//! `sasl.max_authentications_per_minute` exchanges. With `sasl.connections_max_reauth_ms`
//! (KIP-368) the session lifetime is sent to v1+ clients, which re-authenticate on the same
//! connection (as the same principal) before it ends; a connection past it is closed at its
//! next request. Until then, request frames are limited to 512 KiB.

use crate::api::frame::{decode, frame, parse_header, Frame};
use crate::broker::Broker;
use crate::security::sasl::{Exchange, Mechanism, Step};
use crate::security::Listener;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kafka's `sasl.server.max.receive.size` default.
const MAX_RECEIVE_BEFORE_AUTH: usize = 512 * 1024;

/// What the connection does with a request.
pub enum Gate {
    /// A SASL request: [`Auth::handle`].
    Sasl,
    /// Dispatch to the API's handler.
    Pass,
}

pub struct Auth {
    sasl: bool,
    principal: Arc<str>,
    authenticated: bool,
    /// Chosen by SaslHandshake, waiting for SaslAuthenticate.
    exchange: Option<Exchange>,
    /// When the session ends (KIP-368).
    expires: Option<Instant>,
    /// When recent exchanges started (the last minute's).
    started: VecDeque<Instant>,
}

impl Auth {
    /// `principal` is the connection's before SASL: its TLS client certificate's, or
    /// anonymous.
    pub fn new(sasl: bool, principal: Arc<str>) -> Auth {
        Auth {
            sasl,
            principal,
            authenticated: !sasl,
            exchange: None,
            expires: None,
            started: VecDeque::new(),
        }
    }

    pub fn principal(&self) -> Arc<str> {
        self.principal.clone()
    }

    /// The largest request frame accepted now: Kafka's `sasl.server.max.receive.size` until
    /// the client has authenticated, so an anonymous peer cannot make the broker hold large
    /// buffers; `max` after.
    pub fn max_frame(&self, max: usize) -> usize {
        if self.authenticated {
            max
        } else {
            max.min(MAX_RECEIVE_BEFORE_AUTH)
        }
    }

    /// Decides what happens to a request with API key `key`; an error closes the connection.
    pub fn gate(&self, key: i16) -> anyhow::Result<Gate> {
        let sasl_request =
            key == ApiKey::SaslHandshake as i16 || key == ApiKey::SaslAuthenticate as i16;
        if sasl_request {
            return Ok(Gate::Sasl);
        }
        if key == ApiKey::ApiVersions as i16 {
            return Ok(Gate::Pass);
        }
        if !self.authenticated {
            anyhow::bail!("API key {key} sent before SASL authentication");
        }
        if self.expires.is_some_and(|at| Instant::now() >= at) {
            anyhow::bail!("the SASL session expired without re-authentication");
        }
        Ok(Gate::Pass)
    }

    /// Handles SaslHandshake or SaslAuthenticate; `true` with the response closes the
    /// connection after it is sent.
    pub async fn handle(
        &mut self,
        broker: &Arc<Broker>,
        mut body: Bytes,
        listener: &Listener,
    ) -> anyhow::Result<(Frame, bool)> {
        let (key, header) = parse_header(&mut body)?;
        let version = header.request_api_version;
        let settings = &broker.config.sasl;
        if key == ApiKey::SaslHandshake {
            let request: SaslHandshakeRequest = decode(&header, &mut body)?;
            let enabled: Vec<StrBytes> = settings
                .mechanisms
                .iter()
                .map(|m| StrBytes::from_string(m.clone()))
                .collect();
            let response = SaslHandshakeResponse::default().with_mechanisms(enabled);
            if !self.sasl {
                tracing::info!(listener = %listener.name, "SaslHandshake on a listener without SASL");
                let r = response.with_error_code(ResponseError::IllegalSaslState.code());
                return Ok((frame(&header, &r), true));
            }
            if version == 0 {
                // v0 is followed by raw SASL tokens instead of SaslAuthenticate: not supported.
                tracing::info!("SaslHandshake v0 (unframed SASL tokens) is not supported");
                let r = response.with_error_code(ResponseError::IllegalSaslState.code());
                return Ok((frame(&header, &r), true));
            }
            if self.exchange.is_some() {
                let r = response.with_error_code(ResponseError::IllegalSaslState.code());
                return Ok((frame(&header, &r), true));
            }
            let now = Instant::now();
            while self
                .started
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
            {
                self.started.pop_front();
            }
            if self.started.len() >= settings.max_authentications_per_minute as usize {
                tracing::warn!(principal = %self.principal, "too many SASL authentications on one connection; closing it");
                let r = response.with_error_code(ResponseError::PolicyViolation.code());
                return Ok((frame(&header, &r), true));
            }
            self.started.push_back(now);
            let requested = request.mechanism.as_str();
            let mechanism = Mechanism::parse(requested)
                .filter(|m| settings.mechanisms.iter().any(|e| e == m.name()));
            let Some(mechanism) = mechanism else {
                tracing::info!(mechanism = requested, "SASL mechanism not enabled");
                let r = response.with_error_code(ResponseError::UnsupportedSaslMechanism.code());
                return Ok((frame(&header, &r), true));
            };
            self.exchange = Some(Exchange::new(mechanism));
            return Ok((frame(&header, &response), false));
        }

        let request: SaslAuthenticateRequest = decode(&header, &mut body)?;
        let fail = |error: ResponseError, message: String| {
            let r = SaslAuthenticateResponse::default()
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)));
            (frame(&header, &r), true)
        };
        let Some(exchange) = self.exchange.as_mut() else {
            return Ok(fail(
                ResponseError::IllegalSaslState,
                "SaslAuthenticate without a SaslHandshake".into(),
            ));
        };
        let mechanism = exchange.mechanism();
        let counter = |result: &str| {
            crate::metrics::metrics()
                .authentications
                .with_label_values(&[mechanism.name(), result])
                .inc();
        };
        match exchange
            .step(&broker.credentials, &request.auth_bytes)
            .await
        {
            Ok(Step::Continue(bytes)) => {
                let r = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes));
                Ok((frame(&header, &r), false))
            }
            Ok(Step::Done {
                principal,
                response,
            }) => {
                self.exchange = None;
                if self.authenticated && *self.principal != *principal {
                    counter("failure");
                    tracing::warn!(was = %self.principal, now = %principal, "re-authentication as another principal refused");
                    return Ok(fail(
                        ResponseError::SaslAuthenticationFailed,
                        "re-authentication must use the same principal".into(),
                    ));
                }
                counter("success");
                let reauth = settings.connections_max_reauth_ms;
                let lifetime = if reauth > 0 && version >= 1 {
                    reauth as i64
                } else {
                    0
                };
                if reauth > 0 {
                    self.expires = Some(Instant::now() + Duration::from_millis(reauth));
                }
                tracing::debug!(%principal, mechanism = mechanism.name(), reauthenticated = self.authenticated, "SASL authentication succeeded");
                self.principal = principal.into();
                self.authenticated = true;
                let r = SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(response))
                    .with_session_lifetime_ms(lifetime);
                Ok((frame(&header, &r), false))
            }
            Err(error) => {
                self.exchange = None;
                counter("failure");
                tracing::info!(%error, mechanism = mechanism.name(), "SASL authentication failed");
                tokio::time::sleep(Duration::from_millis(
                    settings.failed_authentication_delay_ms,
                ))
                .await;
                Ok(fail(ResponseError::SaslAuthenticationFailed, error.0))
            }
        }
    }
}
