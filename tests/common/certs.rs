//! Certificates made for a test: a CA, a server certificate for localhost
//! and 127.0.0.1 signed by it, and client certificates, written as PEM
//! files with modes the pooler and PostgreSQL accept.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// PEM files of one certificate and its key.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert: PathBuf,
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write a PEM file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl TestCa {
    /// A new CA, its certificate written to `dir/<name>.crt`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let cert = dir.join(format!("{name}.crt"));
        write(&cert, &issuer.pem(), 0o644);
        TestCa { issuer, cert }
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name), written to `dir/<file>.crt` and `.key` (0600).
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> Pem {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let pem = Pem { cert: dir.join(format!("{file}.crt")), key: dir.join(format!("{file}.key")) };
        write(&pem.cert, &cert.pem(), 0o644);
        write(&pem.key, &key.serialize_pem(), 0o600);
        pem
    }
}
