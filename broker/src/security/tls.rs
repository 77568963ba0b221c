//! TLS for SSL and SASL_SSL listeners, with rustls (aws-lc-rs, the provider already in the
//! tree for object storage). Certificates and keys come from PEM files and are re-read when
//! the files change, so a renewed certificate (cert-manager, say) needs no restart.
//! Client certificates are checked against `tls.client_ca_file` when asked for; the
//! principal of an mTLS connection is `User:` and the certificate's subject.

use crate::config::{ClientAuth, TlsSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use x509_cert::der::Decode;

/// What identifies a version of the files: modification time and length of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The configurations in use: for SSL listeners (client certificates as `tls.client_auth`
/// says) and for SASL_SSL ones (no client certificate asked for: SASL identifies the client,
/// as Kafka does since KIP-684).
struct Loaded {
    ssl: Arc<rustls::ServerConfig>,
    sasl_ssl: Arc<rustls::ServerConfig>,
    stamp: Stamp,
}

pub struct TlsServer {
    settings: TlsSettings,
    current: RwLock<Loaded>,
}

fn files(settings: &TlsSettings) -> Vec<PathBuf> {
    [
        &settings.cert_file,
        &settings.key_file,
        &settings.client_ca_file,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

fn stamp(settings: &TlsSettings) -> Stamp {
    files(settings)
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading certificates from {}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

fn load(settings: &TlsSettings, stamp: Stamp) -> anyhow::Result<Loaded> {
    Ok(Loaded {
        ssl: Arc::new(server_config(settings, settings.client_auth)?),
        sasl_ssl: Arc::new(server_config(settings, ClientAuth::None)?),
        stamp,
    })
}

fn server_config(
    settings: &TlsSettings,
    client_auth: ClientAuth,
) -> anyhow::Result<rustls::ServerConfig> {
    let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) else {
        anyhow::bail!("TLS needs tls.cert_file and tls.key_file");
    };
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("reading a private key from {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match (&settings.client_ca_file, client_auth) {
        (Some(ca), auth) if auth != ClientAuth::None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .map_err(|e| anyhow::anyhow!("CA certificate in {}: {e}", ca.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
        _ => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("certificate {} and its key: {e}", cert.display()))
}

impl TlsServer {
    pub fn new(settings: &TlsSettings) -> anyhow::Result<Arc<TlsServer>> {
        let loaded = load(settings, stamp(settings))?;
        Ok(Arc::new(TlsServer {
            settings: settings.clone(),
            current: RwLock::new(loaded),
        }))
    }

    /// The acceptor for an SSL listener, or for a SASL_SSL one (`sasl`).
    pub fn acceptor(&self, sasl: bool) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().expect("tls lock");
        tokio_rustls::TlsAcceptor::from(if sasl {
            current.sasl_ssl.clone()
        } else {
            current.ssl.clone()
        })
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.handshake_timeout_ms)
    }

    /// Re-reads the files when they changed; a set that does not load is logged and the
    /// previous one kept. Returns whether a new configuration is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.settings);
        if self.current.read().expect("tls lock").stamp == now {
            return false;
        }
        match load(&self.settings, now.clone()) {
            Ok(loaded) => {
                *self.current.write().expect("tls lock") = loaded;
                tracing::info!("TLS certificate files changed; new connections use them");
                true
            }
            Err(error) => {
                // Remember the stamp so a half-written renewal is not retried in a tight loop;
                // the next change is tried again.
                self.current.write().expect("tls lock").stamp = now;
                tracing::warn!(%error, "TLS files changed but do not load; keeping the previous ones");
                false
            }
        }
    }

    pub async fn run_reload(self: Arc<Self>, cancel: CancellationToken) {
        let every = Duration::from_millis(self.settings.reload_interval_ms);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

/// `User:` and the subject (RFC 4514) of the client's certificate, if it sent one.
pub fn principal(connection: &rustls::ServerConnection) -> Option<String> {
    let leaf = connection.peer_certificates()?.first()?;
    match x509_cert::Certificate::from_der(leaf.as_ref()) {
        Ok(cert) => Some(format!("User:{}", cert.tbs_certificate.subject)),
        Err(error) => {
            tracing::warn!(%error, "client certificate subject unreadable");
            None
        }
    }
}
