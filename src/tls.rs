//! TLS configurations, built once at start-up from the configuration's
//! files with rustls and its ring provider only: the client side (`tls`,
//! `tls_cert_file`, `tls_key_file`, `tls_ca_file` in `[pgagroal]`) and, per
//! server section with `tls = on`, the pooler's side toward PostgreSQL.
//!
//! Key files are checked as upstream does: a regular file readable by its
//! owner only (0600), or also by its group (0640) when root owns it, and
//! owned by the account running the daemon or by root.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// The ALPN name of PostgreSQL's protocol, which libpq 17 and later send.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Check a private key file's type, mode and owner.
pub fn check_key_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: cannot read the key file: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: the key file is not a regular file", path.display()));
    }
    let mode = meta.mode() & 0o777;
    let me = nix::unistd::geteuid().as_raw();
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(format!(
            "{}: the key file has mode {mode:04o}; it must be 0600 (or 0640 when owned by root)",
            path.display()
        ));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!("{}: the key file must be owned by the user running pgagroal or by root", path.display()));
    }
    Ok(())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    check_key_file(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: not a PEM private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(store)
}

/// The configuration TLS clients are served with. With `ca`, every TLS
/// client must present a certificate signed by one of its CAs.
pub fn server_config(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(cert)?;
    let key = private_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    let builder = match ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| format!("{}: cannot verify clients with these CAs: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: the certificate and its key do not go together: {e}", cert.display()))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

/// The configuration the pooler connects to a TLS server with: verified
/// against `ca` (host name included) when given, else encrypted without
/// verifying the server (as libpq's sslmode=require). `client` is a
/// certificate and key to present.
pub fn client_config(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    let builder = match ca {
        Some(ca) => builder.with_root_certificates(roots(ca)?),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider().signature_verification_algorithms))),
    };
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| format!("{}: unusable client certificate: {e}", cert.display()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("'{host}' cannot be checked against a certificate: {e}"))
}

/// Accepts any server certificate but still checks the handshake's
/// signatures: encryption without authentication of the server.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The TLS configurations the daemon runs with.
#[derive(Clone, Default)]
pub struct TlsConfigs {
    /// Toward clients, when `tls = on`.
    pub clients: Option<Arc<ServerConfig>>,
    /// Toward each server section, by index, when its `tls = on`.
    pub servers: Vec<Option<Arc<ClientConfig>>>,
    /// The metrics port, with `metrics_cert_file` and `metrics_key_file`.
    pub metrics: Option<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigs")
            .field("clients", &self.clients.is_some())
            .field("servers", &self.servers.iter().map(Option::is_some).collect::<Vec<_>>())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl TlsConfigs {
    /// Build every configuration the files ask for; errors name the file.
    /// Also returns warnings (a TLS server that will not be verified).
    pub fn load(config: &crate::config::Config) -> Result<(TlsConfigs, Vec<String>), String> {
        let main = &config.main;
        let mut warnings = Vec::new();
        let clients = match (main.tls, &main.tls_cert_file, &main.tls_key_file) {
            (true, Some(cert), Some(key)) => Some(server_config(cert, key, main.tls_ca_file.as_deref())?),
            (true, _, _) => return Err("tls = on needs tls_cert_file and tls_key_file".into()),
            (false, _, _) => None,
        };
        let metrics = match (&main.metrics_cert_file, &main.metrics_key_file) {
            (Some(cert), Some(key)) => Some(server_config(cert, key, main.metrics_ca_file.as_deref())?),
            (None, None) => None,
            _ => return Err("the metrics port's TLS needs both metrics_cert_file and metrics_key_file".into()),
        };
        let mut servers = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            if !server.tls {
                servers.push(None);
                continue;
            }
            if server.tls_ca_file.is_none() {
                warnings.push(format!(
                    "[{}]: tls = on without tls_ca_file: the connection is encrypted but the server is not verified",
                    server.name
                ));
            } else {
                server_name(&server.host)?;
            }
            let client = server.tls_cert_file.as_deref().zip(server.tls_key_file.as_deref());
            let built =
                client_config(server.tls_ca_file.as_deref(), client).map_err(|e| format!("[{}]: {e}", server.name))?;
            servers.push(Some(built));
        }
        Ok((TlsConfigs { clients, servers, metrics }, warnings))
    }
}
