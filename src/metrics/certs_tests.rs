use super::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber, date_time_ymd};

fn params(cn: &str, to: (i32, u8, u8), serial: &[u8]) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "Example");
    (p.not_before, p.not_after) = (date_time_ymd(2020, 1, 1), date_time_ymd(to.0, to.1, to.2));
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p
}

fn source(role: &'static str, server: &str, path: PathBuf) -> CertSource {
    CertSource { role, server: server.to_string(), path }
}

/// The sample lines rendered for these files.
fn samples(certs: &[(CertSource, CertFacts)], now: i64) -> Vec<String> {
    let mut e = Exposition::new();
    render(&mut e, certs, now);
    e.finish().lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

#[test]
fn counts_and_samples_for_every_kind_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
        dir.path().join(name)
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let valid = params("localhost", (2040, 1, 1), &[0, 0x01, 0x2A]).self_signed(&key).unwrap();
    // A key block before the certificate is skipped.
    let main = write("main.pem", &format!("{}{}", key.serialize_pem(), valid.pem()));
    let metrics = write("metrics.pem", &params("old", (2025, 1, 1), &[7]).self_signed(&key).unwrap().pem());
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut ca_params = params("Test CA", (2040, 1, 1), &[0xFF]);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = write("ca.pem", &ca_params.self_signed(&ca_key).unwrap().pem());
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let leaf = params("db", (2030, 6, 11), &[9]).signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key));
    let soon = write("soon.pem", &leaf.unwrap().pem());
    let garbage = write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n");
    let missing = dir.path().join("missing.pem");
    let list = [("pgagroal", main), ("metrics", metrics), ("primary", soon), ("replica", ca)];
    let list = list.into_iter().chain([("gone", missing), ("junk", garbage)]);
    let certs: Vec<_> = list.map(|(server, path)| (source("server", server, path.clone()), inspect(&path))).collect();
    let now = date_time_ymd(2030, 6, 1).unix_timestamp();
    let counts = [("total", 6), ("accessible", 4), ("valid", 3), ("expired", 1), ("expiring_soon", 1)];
    let counts = counts.into_iter().chain([("inaccessible", 1), ("parse_errors", 1)]);
    let mut expected: Vec<String> = counts.map(|(name, n)| format!("pgagroal_certificates_{name} {n}")).collect();
    let d = dir.path().display();
    for (server, file, ok) in [("pgagroal", "main", 1), ("metrics", "metrics", 1), ("primary", "soon", 1)]
        .into_iter()
        .chain([("replica", "ca", 1), ("gone", "missing", 0), ("junk", "garbage", 0)])
    {
        expected.push(format!("pgagroal_tls_certificate_status{{server=\"{server}\",path=\"{d}/{file}.pem\"}} {ok}"));
    }
    // server, expiration, bits, is_ca, key type, signature, subject CN, issuer CN, serial, expires date.
    let rows = [
        ("pgagroal", 2_208_988_800, 256, 0, 2, 5, "localhost", "localhost", "0x012A", "2040-01-01"),
        ("metrics", 1_735_689_600, 256, 0, 2, 5, "old", "old", "0x07", "2025-01-01"),
        ("primary", 1_907_366_400, 384, 0, 2, 8, "db", "Test CA", "0x09", "2030-06-11"),
        ("replica", 2_208_988_800, 256, 1, 3, 8, "Test CA", "Test CA", "0xFF", "2040-01-01"),
    ];
    let families = ["expiration_seconds", "key_size_bits", "is_ca", "key_type", "signature_algorithm"];
    for (f, family) in families.iter().enumerate() {
        for r in rows {
            let value = [r.1, r.2, r.3, r.4, r.5][f];
            expected.push(format!("pgagroal_tls_certificate_{family}{{server=\"{}\"}} {value}", r.0));
        }
    }
    for (server, _, bits, _, key, sig, subject, issuer, serial, expires) in rows {
        expected.push(format!(
            "pgagroal_tls_certificate_info{{server=\"{server}\",subject=\"/CN={subject}/O=Example\",\
             issuer=\"/CN={issuer}/O=Example\",serial_number=\"{serial}\",expires_date=\"{expires}\",\
             valid_from_date=\"2020-01-01\",key_type_name=\"{}\",signature_algorithm_name=\"{}\",\
             key_size=\"{bits}\"}} 1",
            KEY_TYPE_NAMES[key], SIGNATURES[sig].0
        ));
    }
    assert_eq!(samples(&certs, now), expected);
}

#[test]
fn no_certificates_still_writes_every_family() {
    let mut e = Exposition::new();
    render(&mut e, &[], 0);
    let text = e.finish();
    let families: Vec<_> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    assert_eq!(families.len(), 14);
    assert!(families.iter().all(|f| f.starts_with("pgagroal_") && f.ends_with(" gauge")));
    assert_eq!(families[7], "pgagroal_tls_certificate_status gauge");
    let zeros = samples(&[], 0);
    assert_eq!(zeros.len(), 7);
    assert!(zeros.iter().all(|s| s.starts_with("pgagroal_certificates_") && s.ends_with(" 0")));
}

#[test]
fn validity_boundaries() {
    let cert = |not_before, not_after| {
        let parsed = ParsedCert { not_before, not_after, ..ParsedCert::default() };
        (source("server", "s", "p".into()), CertFacts { accessible: true, parsed: Some(parsed) })
    };
    let now = 1_000_000_000;
    let certs = [
        cert(now, now),                           // valid on its last second, not expiring soon
        cert(now + 1, now + 10),                  // not yet valid: neither valid nor expired, expiring soon
        cert(0, now - 1),                         // expired
        cert(0, now + EXPIRING_SOON_SECONDS),     // valid, expiring soon
        cert(0, now + EXPIRING_SOON_SECONDS + 1), // valid
    ];
    let counts = ["total 5", "accessible 5", "valid 3", "expired 1", "expiring_soon 2", "inaccessible 0"];
    let counts: Vec<_> =
        counts.iter().chain(&["parse_errors 0"]).map(|c| format!("pgagroal_certificates_{c}")).collect();
    assert_eq!(samples(&certs, now)[..7], counts[..]);
}

#[test]
fn helpers_and_hostile_bytes() {
    assert_eq!(
        [significant_bits(&[0, 0x80, 0, 0]), significant_bits(&[0x01, 0xFF]), significant_bits(&[0])],
        [24, 9, 0]
    );
    assert_eq!(serial_hex(&[0, 0]), "0x0");
    assert_eq!([date(0), date(951_782_400), date(-86_400)], ["1970-01-01", "2000-02-29", "1969-12-31"]);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(inspect(dir.path()), CertFacts { accessible: true, parsed: None });
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    assert_eq!(inspect(&fifo), CertFacts { accessible: true, parsed: None });
    assert_eq!(parse_pem(b"\xff\xfe\x00binary\n-----BEGIN X"), None);
    let key = KeyPair::generate().unwrap();
    let der = params("x", (2040, 1, 1), &[1]).self_signed(&key).unwrap().der().to_vec();
    assert!(parse_der(&der).is_some());
    for i in 0..der.len() {
        for flip in [0x01, 0x80, 0xFF] {
            let mut bad = der.clone();
            bad[i] ^= flip;
            let _ = parse_der(&bad);
        }
        let _ = parse_der(&der[..i]);
    }
}

#[test]
fn sources_in_order_without_unset_paths() {
    let p = |s: &'static str| Some(Path::new(s));
    let list = sources(p("/a.pem"), None, [("one", p("/b.pem")), ("two", None), ("three", p(""))]);
    assert_eq!(list, [source("main", "pgagroal", "/a.pem".into()), source("server", "one", "/b.pem".into())]);
}
