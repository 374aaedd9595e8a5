//! Certificate gauges for `GET /metrics`: what each configured certificate
//! file holds, read with [`inspect`] and written by [`render`].
//!
//! Which files count: the client-facing `tls_cert_file` (label
//! `server="pgagroal"`), `metrics_cert_file` (`server="metrics"`) and the
//! `tls_cert_file` of each `[server]` section (`server` is the section's
//! name), in that order; [`sources`] builds the list. CA files and key files
//! are not counted. A file is read as PEM, and its first `CERTIFICATE` block
//! (earlier blocks of other kinds are skipped) is the one described.
//!
//! Each configured file is exactly one of: inaccessible (it cannot be
//! opened), a parse error (opened, but no certificate parses) or accessible
//! (parsed). Of the accessible ones, a certificate is valid when `now` lies
//! within `[notBefore, notAfter]`, expired when it is not valid and
//! `notAfter <= now` (one not yet valid is neither), and expiring soon when
//! `now < notAfter <= now + 30 days`, whether valid or not.
//!
//! Families, all gauges, always written (with no samples or zero values when
//! nothing is configured):
//!
//! - `pgagroal_certificates_total`, `_accessible`, `_valid`, `_expired`,
//!   `_expiring_soon`, `_inaccessible`, `_parse_errors`: unlabelled counts;
//!   total = accessible + inaccessible + parse errors.
//! - `pgagroal_tls_certificate_status{server,path}`: every configured file;
//!   1 when it parsed (even if expired or not yet valid), 0 otherwise.
//! - For parsed certificates only, labelled `{server}`:
//!   `pgagroal_tls_certificate_expiration_seconds` (`notAfter` as Unix
//!   seconds), `_key_size_bits` (RSA modulus bits; the curve's size for EC,
//!   e.g. 256, 384 or 521; 256 for Ed25519, 456 for Ed448), `_is_ca` (1 or
//!   0), `_key_type` (0 unknown, 1 RSA, 2 ECDSA, 3 Ed25519, 4 Ed448, 5 DSA,
//!   6 DH) and `_signature_algorithm` (0 unknown, 1-3 RSA with
//!   SHA-256/384/512, 4 RSA with SHA-1, 5-7 ECDSA with SHA-256/384/512,
//!   8 Ed25519, 9 Ed448, 10-12 RSA-PSS with SHA-256/384/512).
//! - `pgagroal_tls_certificate_info{server,subject,issuer,serial_number,
//!   expires_date,valid_from_date,key_type_name,signature_algorithm_name,
//!   key_size} 1`: names as `/CN=host/O=org` (short attribute names, bytes
//!   outside printable ASCII as `\xHH`), the serial as `0x` and upper-case
//!   hex without leading zero bytes, dates as UTC `YYYY-MM-DD`.
//!
//! A certificate is a CA when its key usage (if present) allows certificate
//! signing and either its basic constraints say CA, or it has no basic
//! constraints and is a self-issued version 1 certificate or has a key usage.

use super::exposition::{Exposition, Kind};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name, X509Version};

/// A certificate whose `notAfter` is at most this far ahead is expiring soon.
pub const EXPIRING_SOON_SECONDS: i64 = 30 * 86_400;

/// A larger file is not read, and counts as a parse error.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One configured certificate file and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSource {
    /// `"main"`, `"metrics"` or `"server"` (not shown in any label).
    pub role: &'static str,
    /// The `server` label: `pgagroal`, `metrics` or the server section's name.
    pub server: String,
    pub path: PathBuf,
}

/// The certificate files that count, in order: the client-facing
/// `tls_cert_file`, `metrics_cert_file`, then each server section's
/// `tls_cert_file` as `(section name, path)`. Unset or empty paths are skipped.
pub fn sources<'a>(
    tls_cert_file: Option<&'a Path>,
    metrics_cert_file: Option<&'a Path>,
    servers: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>,
) -> Vec<CertSource> {
    let main = [("main", "pgagroal", tls_cert_file), ("metrics", "metrics", metrics_cert_file)];
    let servers = servers.into_iter().map(|(name, path)| ("server", name, path));
    main.into_iter()
        .chain(servers)
        .filter_map(|(role, server, path)| {
            let path = path.filter(|p| !p.as_os_str().is_empty())?;
            Some(CertSource { role, server: server.to_string(), path: path.to_path_buf() })
        })
        .collect()
}

/// `key_type_name` by `pgagroal_tls_certificate_key_type` code.
pub const KEY_TYPE_NAMES: [&str; 7] = ["Unknown", "RSA", "ECDSA", "Ed25519", "Ed448", "DSA", "DH"];

/// `signature_algorithm_name` by `pgagroal_tls_certificate_signature_algorithm`
/// code, with the algorithm's OID (for RSA-PSS, its hash's OID).
pub const SIGNATURES: [(&str, &str); 13] = [
    ("Unknown", ""),
    ("SHA256WithRSA", "1.2.840.113549.1.1.11"),
    ("SHA384WithRSA", "1.2.840.113549.1.1.12"),
    ("SHA512WithRSA", "1.2.840.113549.1.1.13"),
    ("SHA1WithRSA", "1.2.840.113549.1.1.5"),
    ("ECDSAWithSHA256", "1.2.840.10045.4.3.2"),
    ("ECDSAWithSHA384", "1.2.840.10045.4.3.3"),
    ("ECDSAWithSHA512", "1.2.840.10045.4.3.4"),
    ("Ed25519", "1.3.101.112"),
    ("Ed448", "1.3.101.113"),
    ("SHA256WithPSS", "2.16.840.1.101.3.4.2.1"),
    ("SHA384WithPSS", "2.16.840.1.101.3.4.2.2"),
    ("SHA512WithPSS", "2.16.840.1.101.3.4.2.3"),
];

/// What was found in one certificate file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertFacts {
    /// The file could be opened for reading.
    pub accessible: bool,
    /// Its first certificate; `None` when none could be read or parsed.
    pub parsed: Option<ParsedCert>,
}

impl CertFacts {
    /// The certificate, if the file was accessible and parsed.
    pub fn cert(&self) -> Option<&ParsedCert> {
        self.parsed.as_ref().filter(|_| self.accessible)
    }
}

/// The fields of a parsed certificate that the gauges show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedCert {
    /// `notBefore` and `notAfter`, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    /// An index into [`KEY_TYPE_NAMES`].
    pub key_type: u8,
    pub key_bits: u32,
    /// An index into [`SIGNATURES`].
    pub signature: u8,
    pub subject: String,
    pub issuer: String,
    /// `0x` and upper-case hex.
    pub serial: String,
}

/// Read and parse one certificate file (at most 1 MiB of PEM). A named pipe
/// is not opened (that would wait for a writer) and counts as unparseable.
pub fn inspect(path: &Path) -> CertFacts {
    if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
        return CertFacts { accessible: true, parsed: None };
    }
    let Ok(file) = std::fs::File::open(path) else { return CertFacts { accessible: false, parsed: None } };
    let mut bytes = Vec::new();
    let read = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes);
    let fits = read.is_ok() && bytes.len() as u64 <= MAX_FILE_BYTES;
    CertFacts { accessible: true, parsed: if fits { parse_pem(&bytes) } else { None } }
}

/// The first certificate block of a PEM document, parsed.
pub fn parse_pem(bytes: &[u8]) -> Option<ParsedCert> {
    for block in Pem::iter_from_buffer(bytes) {
        let pem = block.ok()?;
        if matches!(pem.label.as_str(), "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE") {
            return parse_der(&pem.contents);
        }
    }
    None
}

/// One DER-encoded certificate, parsed (trailing bytes are ignored).
pub fn parse_der(der: &[u8]) -> Option<ParsedCert> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let tbs = &cert.tbs_certificate;
    let (key_type, key_bits) = key_info(&tbs.subject_pki);
    Some(ParsedCert {
        not_before: tbs.validity.not_before.timestamp(),
        not_after: tbs.validity.not_after.timestamp(),
        is_ca: is_ca(&cert),
        key_type,
        key_bits,
        signature: signature_algorithm(&cert.signature_algorithm),
        subject: oneline(&tbs.subject),
        issuer: oneline(&tbs.issuer),
        serial: serial_hex(tbs.raw_serial()),
    })
}

fn key_info(spki: &SubjectPublicKeyInfo) -> (u8, u32) {
    let parsed = spki.parsed();
    let fallback = parsed.as_ref().map_or(0, |k| u32::try_from(k.key_size()).unwrap_or(0));
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => match &parsed {
            Ok(PublicKey::RSA(rsa)) => (1, significant_bits(rsa.modulus)),
            _ => (1, 0),
        },
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            let bits = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7" | "1.3.132.0.10") => 256,
                Some("1.3.132.0.34") => 384,
                Some("1.3.132.0.35") => 521,
                _ => fallback,
            };
            (2, bits)
        }
        "1.3.101.112" => (3, 256),
        "1.3.101.113" => (4, 456),
        "1.2.840.10040.4.1" => match &parsed {
            Ok(PublicKey::DSA(y)) => (5, significant_bits(y)),
            _ => (5, 0),
        },
        "1.2.840.10046.2.1" => (6, fallback),
        _ => (0, fallback),
    }
}

/// The bit length of a big-endian unsigned integer.
fn significant_bits(bytes: &[u8]) -> u32 {
    let bytes = &bytes[bytes.iter().take_while(|&&b| b == 0).count()..];
    match bytes.first() {
        None => 0,
        Some(first) => u32::try_from((bytes.len() - 1) * 8).unwrap_or(0) + (8 - first.leading_zeros()),
    }
}

/// The code of a signature algorithm (an index into [`SIGNATURES`]).
fn signature_algorithm(alg: &AlgorithmIdentifier) -> u8 {
    let oid = alg.algorithm.to_id_string();
    let (oid, codes) = if oid == "1.2.840.113549.1.1.10" {
        let params = alg.parameters.as_ref().and_then(|p| RsaSsaPssParams::try_from(p).ok());
        (params.map_or(String::new(), |p| p.hash_algorithm_oid().to_id_string()), 10..13)
    } else {
        (oid, 1..10)
    };
    codes.into_iter().find(|&i| SIGNATURES[usize::from(i)].1 == oid).unwrap_or(0)
}

fn is_ca(cert: &X509Certificate) -> bool {
    let cert_sign = cert.key_usage().ok().flatten().map(|k| k.value.key_cert_sign());
    if cert_sign == Some(false) {
        return false;
    }
    if let Ok(Some(bc)) = cert.basic_constraints() {
        return bc.value.ca;
    }
    let tbs = &cert.tbs_certificate;
    (tbs.version == X509Version::V1 && tbs.subject.as_raw() == tbs.issuer.as_raw()) || cert_sign == Some(true)
}

/// A name as `/CN=host/O=org`.
fn oneline(name: &X509Name) -> String {
    let mut out = String::new();
    for attr in name.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let key = match oid.as_str() {
            "2.5.4.3" => "CN",
            "2.5.4.6" => "C",
            "2.5.4.7" => "L",
            "2.5.4.8" => "ST",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "2.5.4.5" => "serialNumber",
            "0.9.2342.19200300.100.1.25" => "DC",
            "0.9.2342.19200300.100.1.1" => "UID",
            "1.2.840.113549.1.9.1" => "emailAddress",
            other => other,
        };
        out.push('/');
        out.push_str(key);
        out.push('=');
        let value = attr.as_str().map_or(attr.as_slice(), str::as_bytes);
        for &b in value {
            if (0x20..0x7f).contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
    }
    out
}

fn serial_hex(raw: &[u8]) -> String {
    let digits: String = raw.iter().skip_while(|&&b| b == 0).map(|b| format!("{b:02X}")).collect();
    if digits.is_empty() { "0x0".to_string() } else { format!("0x{digits}") }
}

/// A UTC date, `YYYY-MM-DD`, from Unix seconds.
fn date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Write every certificate family for these files, as of `now_unix`.
pub fn render(e: &mut Exposition, certs: &[(CertSource, CertFacts)], now_unix: i64) {
    let (mut accessible, mut valid, mut expired, mut soon, mut inaccessible, mut parse_errors) = (0, 0, 0, 0, 0, 0);
    for (_, facts) in certs {
        match facts.cert() {
            _ if !facts.accessible => inaccessible += 1,
            None => parse_errors += 1,
            Some(c) => {
                accessible += 1;
                if c.not_before <= now_unix && now_unix <= c.not_after {
                    valid += 1;
                } else if c.not_after <= now_unix {
                    expired += 1;
                }
                if now_unix < c.not_after && c.not_after <= now_unix.saturating_add(EXPIRING_SOON_SECONDS) {
                    soon += 1;
                }
            }
        }
    }
    let counts = [
        ("pgagroal_certificates_total", "Total number of TLS certificates configured", certs.len()),
        ("pgagroal_certificates_accessible", "Number of accessible TLS certificates", accessible),
        ("pgagroal_certificates_valid", "Number of valid TLS certificates", valid),
        ("pgagroal_certificates_expired", "Number of expired TLS certificates", expired),
        ("pgagroal_certificates_expiring_soon", "Number of TLS certificates expiring within 30 days", soon),
        ("pgagroal_certificates_inaccessible", "Number of inaccessible TLS certificate files", inaccessible),
        ("pgagroal_certificates_parse_errors", "Number of TLS certificates with parsing errors", parse_errors),
    ];
    for (name, help, value) in counts {
        e.single(name, help, Kind::Gauge, value);
    }
    let status = "pgagroal_tls_certificate_status";
    e.family(status, "Certificate status (1=valid, 0=invalid/inaccessible)", Kind::Gauge);
    for (source, facts) in certs {
        let path = source.path.to_string_lossy();
        e.sample(status, &[("server", &source.server), ("path", &path)], u8::from(facts.cert().is_some()));
    }
    let parsed: Vec<_> = certs.iter().filter_map(|(s, f)| f.cert().map(|c| (s.server.as_str(), c))).collect();
    type Value = fn(&ParsedCert) -> i64;
    let per_cert: [(&str, &str, Value); 5] = [
        ("pgagroal_tls_certificate_expiration_seconds", "TLS certificate expiration time", |c| c.not_after),
        ("pgagroal_tls_certificate_key_size_bits", "TLS certificate key size in bits", |c| c.key_bits.into()),
        ("pgagroal_tls_certificate_is_ca", "Whether certificate is a CA certificate", |c| c.is_ca.into()),
        ("pgagroal_tls_certificate_key_type", "TLS certificate key type", |c| c.key_type.into()),
        ("pgagroal_tls_certificate_signature_algorithm", "TLS certificate signature algorithm", |c| c.signature.into()),
    ];
    for (name, help, value) in per_cert {
        e.family(name, help, Kind::Gauge);
        for (server, c) in &parsed {
            e.sample(name, &[("server", server)], value(c));
        }
    }
    let info = "pgagroal_tls_certificate_info";
    e.family(info, "TLS certificate metadata", Kind::Gauge);
    for (server, c) in &parsed {
        let (expires, from, bits) = (date(c.not_after), date(c.not_before), c.key_bits.to_string());
        let labels = [
            ("server", *server),
            ("subject", &c.subject),
            ("issuer", &c.issuer),
            ("serial_number", &c.serial),
            ("expires_date", &expires),
            ("valid_from_date", &from),
            ("key_type_name", KEY_TYPE_NAMES.get(usize::from(c.key_type)).unwrap_or(&"Unknown")),
            ("signature_algorithm_name", SIGNATURES.get(usize::from(c.signature)).map_or("Unknown", |s| s.0)),
            ("key_size", &bits),
        ];
        e.sample(info, &labels, 1);
    }
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
