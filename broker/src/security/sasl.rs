//! SASL: PLAIN and SCRAM-SHA-256/512 (RFC 5802) on the server side, and the SCRAM
//! credentials they check, stored salted in the metadata store.
//!
//! Keys: `/silt/scram/{user}/{mechanism}` → [`ScramCredential`] as JSON (salt, stored key,
//! server key, iterations: never the password). `{user}` has `%` and `/` percent-encoded.
//! PLAIN has no credentials of its own: its password is checked against the user's SCRAM
//! credential, so one AlterUserScramCredentials call serves both.

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2, rand::SecureRandom};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use silt_metadata::keys;
use silt_metadata::{Compare, MetadataStore, Op, Txn};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Kafka's bounds on SCRAM iterations.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        Some(match name {
            "PLAIN" => Mechanism::Plain,
            "SCRAM-SHA-256" => Mechanism::ScramSha256,
            "SCRAM-SHA-512" => Mechanism::ScramSha512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's ScramMechanism code (DescribeUserScramCredentials, AlterUserScramCredentials).
    pub fn scram_code(self) -> i8 {
        match self {
            Mechanism::Plain => 0,
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    pub fn from_scram_code(code: i8) -> Option<Mechanism> {
        match code {
            1 => Some(Mechanism::ScramSha256),
            2 => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }

    pub const SCRAM: [Mechanism; 2] = [Mechanism::ScramSha512, Mechanism::ScramSha256];

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha512 => &digest::SHA512,
            _ => &digest::SHA256,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
            _ => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    fn output_len(self) -> usize {
        self.digest_algorithm().output_len()
    }
}

/// A stored SCRAM credential (RFC 5802's StoredKey and ServerKey).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

mod b64 {
    use super::{Engine, B64};
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        B64.decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

fn hmac(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(mechanism.hmac_algorithm(), key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(mechanism.digest_algorithm(), data)
        .as_ref()
        .to_vec()
}

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    bytes
}

/// PBKDF2 of a password: RFC 5802's SaltedPassword.
pub fn salted_password(
    mechanism: Mechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    #[cfg(test)]
    HASHED_SALTS.lock().unwrap().push(salt.to_vec());
    let mut out = vec![0; mechanism.output_len()];
    let iterations = NonZeroU32::new(iterations.max(1)).expect("at least one iteration");
    pbkdf2::derive(
        mechanism.pbkdf2_algorithm(),
        iterations,
        salt,
        password,
        &mut out,
    );
    out
}

impl ScramCredential {
    /// What AlterUserScramCredentials sends: the client salts and hashes the password.
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: Vec<u8>,
        salted: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = hmac(mechanism, salted, b"Client Key");
        ScramCredential {
            stored_key: hash(mechanism, &client_key),
            server_key: hmac(mechanism, salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    pub fn from_password(mechanism: Mechanism, password: &str, iterations: u32) -> ScramCredential {
        let salt = random(32);
        let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from (PLAIN).
    fn verify_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = salted_password(mechanism, password.as_bytes(), &self.salt, self.iterations);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        constant_time::verify_slices_are_equal(&hash(mechanism, &client_key), &self.stored_key)
            .is_ok()
    }
}

/// The SCRAM credentials in the metadata store.
#[derive(Clone)]
pub struct Credentials {
    store: Arc<dyn MetadataStore>,
    decoy_secret: Arc<tokio::sync::OnceCell<Vec<u8>>>,
}

#[cfg(test)]
static HASHED_SALTS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn escape(user: &str) -> String {
    user.replace('%', "%25").replace('/', "%2F")
}

fn unescape(user: &str) -> String {
    user.replace("%2F", "/").replace("%25", "%")
}

fn key(user: &str, mechanism: Mechanism) -> String {
    keys::scram(&escape(user), mechanism.name())
}

impl Credentials {
    pub fn new(store: Arc<dyn MetadataStore>) -> Credentials {
        Credentials {
            store,
            decoy_secret: Arc::default(),
        }
    }

    /// A credential for a user that does not exist: its salt is stable per user and mechanism
    /// (derived from a server secret kept in the metadata store), its iteration count the
    /// default, and its keys random, so no proof or password matches it and the exchange looks
    /// the same as a known user's.
    pub async fn decoy(&self, user: &str, mechanism: Mechanism) -> anyhow::Result<ScramCredential> {
        let secret = self
            .decoy_secret
            .get_or_try_init(|| async {
                let fresh = random(32);
                let txn = Txn::new()
                    .when(Compare::absent(keys::SCRAM_DECOY_SECRET))
                    .then(Op::put(keys::SCRAM_DECOY_SECRET, fresh));
                self.store.txn(txn).await?;
                // Whoever won the race, every broker uses the stored one.
                match self.store.get(keys::SCRAM_DECOY_SECRET).await? {
                    Some(kv) if kv.value.len() >= 16 => anyhow::Ok(kv.value),
                    _ => anyhow::bail!("the SCRAM decoy secret is missing or too short"),
                }
            })
            .await?;
        let mut salt = hmac(
            Mechanism::ScramSha256,
            secret,
            format!("salt\0{}\0{user}", mechanism.name()).as_bytes(),
        );
        salt.truncate(32);
        Ok(ScramCredential {
            salt,
            stored_key: random(mechanism.output_len()),
            server_key: random(mechanism.output_len()),
            iterations: MIN_ITERATIONS as u32,
        })
    }

    pub async fn get(
        &self,
        user: &str,
        mechanism: Mechanism,
    ) -> anyhow::Result<Option<ScramCredential>> {
        match self.store.get(&key(user, mechanism)).await? {
            Some(kv) => Ok(Some(serde_json::from_slice(&kv.value)?)),
            None => Ok(None),
        }
    }

    pub async fn put(
        &self,
        user: &str,
        mechanism: Mechanism,
        credential: &ScramCredential,
    ) -> anyhow::Result<()> {
        let txn = Txn::new().then(Op::put(
            key(user, mechanism),
            serde_json::to_vec(credential)?,
        ));
        self.store.txn(txn).await?;
        Ok(())
    }

    /// Deletes a credential; false when there was none.
    pub async fn delete(&self, user: &str, mechanism: Mechanism) -> anyhow::Result<bool> {
        let key = key(user, mechanism);
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(false);
        };
        let txn = Txn::new()
            .when(Compare::mod_revision(&key, kv.mod_revision))
            .then(Op::delete(&key));
        Ok(self.store.txn(txn).await?.succeeded)
    }

    /// Every credential: (user, mechanism, iterations), by user.
    pub async fn list(&self) -> anyhow::Result<Vec<(String, Mechanism, i32)>> {
        let mut out = Vec::new();
        for kv in self.store.list(keys::SCRAM).await? {
            let rest = &kv.key[keys::SCRAM.len()..];
            let Some((user, mechanism)) = rest.rsplit_once('/') else {
                continue;
            };
            let (Some(mechanism), Ok(credential)) = (
                Mechanism::parse(mechanism),
                serde_json::from_slice::<ScramCredential>(&kv.value),
            ) else {
                continue;
            };
            out.push((unescape(user), mechanism, credential.iterations as i32));
        }
        Ok(out)
    }

    /// Creates the configured users' credentials that do not exist yet (both SCRAM
    /// mechanisms); existing ones are left alone, also when another broker races this one.
    pub async fn ensure(
        &self,
        users: &std::collections::BTreeMap<String, String>,
        iterations: u32,
    ) -> anyhow::Result<()> {
        for (user, password) in users {
            for mechanism in Mechanism::SCRAM {
                let key = key(user, mechanism);
                let credential = ScramCredential::from_password(mechanism, password, iterations);
                let txn = Txn::new()
                    .when(Compare::absent(&key))
                    .then(Op::put(&key, serde_json::to_vec(&credential)?));
                if self.store.txn(txn).await?.succeeded {
                    tracing::info!(
                        user,
                        mechanism = mechanism.name(),
                        "SCRAM credential created from sasl.users"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A failed authentication; the message goes to the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

fn invalid(mechanism: Mechanism) -> AuthError {
    AuthError(format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        mechanism.name()
    ))
}

fn malformed(what: &str) -> AuthError {
    AuthError(format!("Authentication failed: {what}"))
}

/// What one SaslAuthenticate round gives.
pub enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `principal`; send these bytes (possibly empty).
    Done {
        principal: String,
        response: Vec<u8>,
    },
}

enum State {
    Start,
    /// SCRAM: server-first sent.
    ServerFirst {
        user: String,
        credential: ScramCredential,
        /// client-first-bare + "," + server-first
        messages: String,
        nonce: String,
        gs2_header: String,
        known: bool,
    },
    Finished,
}

/// The server side of one SASL exchange.
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

/// RFC 5802 `saslname`: `=2C` is `,` and `=3D` is `=`; other `=` are errors.
fn decode_saslname(name: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(malformed("invalid username encoding")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        Exchange {
            mechanism,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Handles the client's next message.
    pub async fn step(
        &mut self,
        credentials: &Credentials,
        token: &[u8],
    ) -> Result<Step, AuthError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match (self.mechanism, state) {
            (Mechanism::Plain, State::Start) => self.plain(credentials, token).await,
            (_, State::Start) => self.client_first(credentials, token).await,
            (
                _,
                State::ServerFirst {
                    user,
                    credential,
                    messages,
                    nonce,
                    gs2_header,
                    known,
                },
            ) => self.client_final(token, user, credential, messages, nonce, gs2_header, known),
            (_, State::Finished) => Err(malformed("the exchange is already complete")),
        }
    }

    async fn plain(&mut self, credentials: &Credentials, token: &[u8]) -> Result<Step, AuthError> {
        let text =
            std::str::from_utf8(token).map_err(|_| malformed("PLAIN message is not UTF-8"))?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "PLAIN message must be authzid NUL user NUL password",
            ));
        };
        if user.is_empty() || password.is_empty() {
            return Err(malformed("PLAIN needs a user name and a password"));
        }
        if !authzid.is_empty() && authzid != user {
            return Err(malformed("authorization id differs from the user name"));
        }
        let mut found = None;
        for mechanism in Mechanism::SCRAM {
            let credential = credentials
                .get(user, mechanism)
                .await
                .map_err(|e| AuthError(format!("credential lookup failed: {e}")))?;
            if let Some(credential) = credential {
                found = Some((mechanism, credential, true));
                break;
            }
        }
        // An unknown user costs the same PBKDF2 work as a known one, so the time taken does
        // not tell who exists.
        let (mechanism, credential, known) = match found {
            Some(found) => found,
            None => {
                let mechanism = Mechanism::SCRAM[0];
                let decoy = credentials
                    .decoy(user, mechanism)
                    .await
                    .map_err(|e| AuthError(format!("credential lookup failed: {e}")))?;
                (mechanism, decoy, false)
            }
        };
        // PBKDF2 off the runtime threads.
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || credential.verify_password(mechanism, &password))
                .await
                .unwrap_or(false);
        if ok && known {
            return Ok(Step::Done {
                principal: format!("User:{user}"),
                response: Vec::new(),
            });
        }
        Err(invalid(Mechanism::Plain))
    }

    async fn client_first(
        &mut self,
        credentials: &Credentials,
        token: &[u8],
    ) -> Result<Step, AuthError> {
        let text =
            std::str::from_utf8(token).map_err(|_| malformed("SCRAM message is not UTF-8"))?;
        // gs2-header: "n," or "y," (no channel binding here), then "a=authzid," or ",".
        let (cb, rest) = text
            .split_once(',')
            .ok_or_else(|| malformed("SCRAM client-first message has no GS2 header"))?;
        if cb != "n" && cb != "y" {
            return Err(malformed("channel binding is not supported"));
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| malformed("SCRAM client-first message has no GS2 header"))?;
        let gs2_header = format!("{cb},{authzid},");
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", v)) => user = Some(decode_saslname(v)?),
                Some(("r", v)) => client_nonce = Some(v.to_string()),
                Some(("m", _)) => return Err(malformed("mandatory extensions are not supported")),
                Some(("tokenauth", "true")) => {
                    return Err(malformed("delegation tokens are not supported"))
                }
                _ => {}
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Err(malformed("SCRAM client-first message needs n= and r="));
        };
        if user.is_empty() || client_nonce.is_empty() {
            return Err(malformed("SCRAM needs a user name and a nonce"));
        }
        if let Some(a) = authzid.strip_prefix("a=") {
            if decode_saslname(a)? != user {
                return Err(malformed("authorization id differs from the user name"));
            }
        }
        let found = credentials
            .get(&user, self.mechanism)
            .await
            .map_err(|e| AuthError(format!("credential lookup failed: {e}")))?;
        // An unknown user goes through the whole exchange with a credential no proof matches,
        // so the answer does not tell who exists.
        let known = found.is_some();
        let credential = match found {
            Some(credential) => credential,
            None => credentials
                .decoy(&user, self.mechanism)
                .await
                .map_err(|e| AuthError(format!("credential lookup failed: {e}")))?,
        };
        let nonce = format!("{client_nonce}{}", B64.encode(random(24)));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let messages = format!("{bare},{server_first}");
        self.state = State::ServerFirst {
            user,
            credential,
            messages,
            nonce,
            gs2_header,
            known,
        };
        Ok(Step::Continue(server_first.into_bytes()))
    }

    #[allow(clippy::too_many_arguments)]
    fn client_final(
        &mut self,
        token: &[u8],
        user: String,
        credential: ScramCredential,
        messages: String,
        nonce: String,
        gs2_header: String,
        known: bool,
    ) -> Result<Step, AuthError> {
        let mechanism = self.mechanism;
        let text =
            std::str::from_utf8(token).map_err(|_| malformed("SCRAM message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("SCRAM client-final message has no proof"))?;
        let mut channel = None;
        let mut final_nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", v)) => channel = Some(v),
                Some(("r", v)) => final_nonce = Some(v),
                _ => {}
            }
        }
        if channel != Some(B64.encode(gs2_header.as_bytes()).as_str()) {
            return Err(malformed("channel binding does not match the GS2 header"));
        }
        // RFC 5802 echoes the server's nonce; librdkafka sends its own nonce in front of it.
        // Kafka accepts any nonce that ends with the server's, and so does this.
        if !final_nonce.is_some_and(|n| n.ends_with(nonce.as_str())) {
            return Err(malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| malformed("proof is not base64"))?;
        let auth_message = format!("{messages},{without_proof}");
        let signature = hmac(mechanism, &credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(invalid(mechanism));
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let matches = constant_time::verify_slices_are_equal(
            &hash(mechanism, &client_key),
            &credential.stored_key,
        )
        .is_ok();
        if !known || !matches {
            return Err(invalid(mechanism));
        }
        let server_signature = hmac(mechanism, &credential.server_key, auth_message.as_bytes());
        Ok(Step::Done {
            principal: format!("User:{user}"),
            response: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of SCRAM, as RFC 5802 describes it.
    fn client_proof(
        mechanism: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        without_proof: &str,
    ) -> (String, Vec<u8>) {
        let mut salt = None;
        let mut iterations = None;
        for a in server_first.split(',') {
            match a.split_once('=') {
                Some(("s", v)) => salt = Some(B64.decode(v).unwrap()),
                Some(("i", v)) => iterations = Some(v.parse().unwrap()),
                _ => {}
            }
        }
        let salted = salted_password(
            mechanism,
            password.as_bytes(),
            &salt.unwrap(),
            iterations.unwrap(),
        );
        let client_key = hmac(mechanism, &salted, b"Client Key");
        let stored = hash(mechanism, &client_key);
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(mechanism, &stored, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(mechanism, &salted, b"Server Key");
        (
            B64.encode(proof),
            hmac(mechanism, &server_key, auth.as_bytes()),
        )
    }

    async fn exchange(mechanism: Mechanism, password: &str) -> Result<Step, AuthError> {
        let store = Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory());
        let credentials = Credentials::new(store);
        let users = [("alice".to_string(), "secret".to_string())].into();
        credentials.ensure(&users, 4096).await.unwrap();
        let mut exchange = Exchange::new(mechanism);
        let bare = "n=alice,r=abc123";
        let Step::Continue(server_first) = exchange
            .step(&credentials, format!("n,,{bare}").as_bytes())
            .await?
        else {
            panic!("SCRAM continues after the first message");
        };
        let server_first = String::from_utf8(server_first).unwrap();
        let nonce = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        assert!(nonce.starts_with("abc123") && nonce.len() > 6);
        let without_proof = format!("c=biws,r={nonce}");
        let (proof, server_signature) =
            client_proof(mechanism, password, bare, &server_first, &without_proof);
        let step = exchange
            .step(
                &credentials,
                format!("{without_proof},p={proof}").as_bytes(),
            )
            .await?;
        if let Step::Done { response, .. } = &step {
            assert_eq!(
                response,
                format!("v={}", B64.encode(server_signature)).as_bytes()
            );
        }
        Ok(step)
    }

    #[tokio::test]
    async fn scram_accepts_the_password_and_refuses_others() {
        for mechanism in Mechanism::SCRAM {
            match exchange(mechanism, "secret").await {
                Ok(Step::Done { principal, .. }) => assert_eq!(principal, "User:alice"),
                _ => panic!("{mechanism:?}: the right password is refused"),
            }
            assert!(exchange(mechanism, "wrong").await.is_err());
        }
    }

    #[tokio::test]
    async fn plain_checks_against_the_scram_credential() {
        let store = Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory());
        let credentials = Credentials::new(store);
        let users = [("bob".to_string(), "pw".to_string())].into();
        credentials.ensure(&users, 4096).await.unwrap();
        let ok = Exchange::new(Mechanism::Plain)
            .step(&credentials, b"\0bob\0pw")
            .await;
        assert!(matches!(ok, Ok(Step::Done { principal, .. }) if principal == "User:bob"));
        for bad in [
            &b"\0bob\0nope"[..],
            b"\0nobody\0pw",
            b"bob\0pw",
            b"x\0bob\0pw",
        ] {
            assert!(Exchange::new(Mechanism::Plain)
                .step(&credentials, bad)
                .await
                .is_err());
        }
        assert_eq!(credentials.list().await.unwrap().len(), 2);
        assert!(credentials
            .delete("bob", Mechanism::ScramSha256)
            .await
            .unwrap());
        assert!(!credentials
            .delete("bob", Mechanism::ScramSha256)
            .await
            .unwrap());
    }

    async fn server_first_salt(
        credentials: &Credentials,
        mechanism: Mechanism,
        user: &str,
    ) -> String {
        let Step::Continue(first) = Exchange::new(mechanism)
            .step(credentials, format!("n,,n={user},r=nonce1").as_bytes())
            .await
            .unwrap()
        else {
            panic!("SCRAM continues");
        };
        let first = String::from_utf8(first).unwrap();
        first
            .split(',')
            .find_map(|a| a.strip_prefix("s="))
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn unknown_users_get_a_stable_salt_and_the_same_work() {
        let store: Arc<dyn MetadataStore> =
            Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory());
        let credentials = Credentials::new(store.clone());
        let users = [("alice".to_string(), "secret".to_string())].into();
        credentials.ensure(&users, 4096).await.unwrap();
        for mechanism in Mechanism::SCRAM {
            let known = server_first_salt(&credentials, mechanism, "alice").await;
            assert_eq!(
                known,
                server_first_salt(&credentials, mechanism, "alice").await
            );
            let ghost = server_first_salt(&credentials, mechanism, "mallory").await;
            assert_eq!(
                ghost,
                server_first_salt(&credentials, mechanism, "mallory").await,
                "an unknown user's salt must not change between attempts"
            );
            assert_ne!(
                ghost,
                server_first_salt(&credentials, mechanism, "eve").await
            );
            // Another broker on the same store gives the same answer.
            let other = Credentials::new(store.clone());
            assert_eq!(ghost, server_first_salt(&other, mechanism, "mallory").await);
            assert_eq!(B64.decode(&ghost).unwrap().len(), 32);
        }
        // PLAIN with an unknown user runs PBKDF2 over the decoy salt, as a known user's would.
        let decoy = credentials
            .decoy("nobody", Mechanism::SCRAM[0])
            .await
            .unwrap();
        assert!(Exchange::new(Mechanism::Plain)
            .step(&credentials, b"\0nobody\0pw")
            .await
            .is_err());
        assert!(HASHED_SALTS.lock().unwrap().contains(&decoy.salt));
    }

    #[test]
    fn saslnames_decode() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(decode_saslname("a=b").is_err());
    }
}
