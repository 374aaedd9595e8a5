//! `pgagroal_hba.conf`: who may connect. Lines are `TYPE DATABASE USER
//! ADDRESS METHOD`; the first line that matches decides. Addresses are `all`
//! or CIDR blocks (IPv4 and IPv6, matched bit by bit; a bare address is a
//! single host); Unix-socket clients have no address and only match `all`.

use crate::config::ConfigError;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConnType {
    /// Plain or TLS connections.
    Host,
    /// TLS connections only.
    HostSsl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Trust,
    Reject,
    Password,
    Md5,
    ScramSha256,
    /// Whatever the server asks for.
    All,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Trust => "trust",
            Method::Reject => "reject",
            Method::Password => "password",
            Method::Md5 => "md5",
            Method::ScramSha256 => "scram-sha-256",
            Method::All => "all",
        }
    }
}

/// `all` or a comma-separated list of names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Names {
    All,
    List(Vec<String>),
}

impl Names {
    fn parse(token: &str) -> Names {
        if token.eq_ignore_ascii_case("all") {
            Names::All
        } else {
            Names::List(token.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Names::All => true,
            Names::List(names) => names.iter().any(|n| n == name),
        }
    }
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        // An IPv4 client seen through a dual-stack socket is ::ffff:a.b.c.d.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(net: &[u8], addr: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if net[..full] != addr[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (net[full] & mask) == (addr[full] & mask)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Address {
    All,
    Net(Cidr),
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HbaEntry {
    pub conn_type: ConnType,
    pub database: Names,
    pub user: Names,
    pub address: Address,
    pub method: Method,
    pub line: usize,
}

/// The whole file, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hba {
    pub entries: Vec<HbaEntry>,
}

impl Hba {
    pub fn load(path: &Path) -> Result<Hba, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
        Hba::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Hba, ConfigError> {
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let invalid = |key: &str, expected: &str| ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                key: key.to_string(),
                expected: expected.to_string(),
            };
            if fields.len() != 5 {
                return Err(ConfigError::Syntax {
                    file: path.to_path_buf(),
                    line,
                    expected: format!("5 fields: TYPE DATABASE USER ADDRESS METHOD, found {}", fields.len()),
                });
            }
            let conn_type = match fields[0].to_ascii_lowercase().as_str() {
                "host" => ConnType::Host,
                "hostssl" => ConnType::HostSsl,
                _ => return Err(invalid("TYPE", &format!("host or hostssl, not '{}'", fields[0]))),
            };
            let address = if fields[3].eq_ignore_ascii_case("all") {
                Address::All
            } else {
                Address::Net(Cidr::parse(fields[3]).ok_or_else(|| {
                    invalid(
                        "ADDRESS",
                        &format!("all or an address/prefix such as 10.0.0.0/8 or ::1/128, not '{}'", fields[3]),
                    )
                })?)
            };
            let method = match fields[4].to_ascii_lowercase().as_str() {
                "trust" => Method::Trust,
                "reject" => Method::Reject,
                "password" => Method::Password,
                "md5" => Method::Md5,
                "scram-sha-256" => Method::ScramSha256,
                "all" => Method::All,
                _ => {
                    return Err(invalid(
                        "METHOD",
                        &format!("trust, reject, password, md5, scram-sha-256 or all, not '{}'", fields[4]),
                    ));
                }
            };
            entries.push(HbaEntry {
                conn_type,
                database: Names::parse(fields[1]),
                user: Names::parse(fields[2]),
                address,
                method,
                line,
            });
        }
        if entries.is_empty() {
            return Err(ConfigError::Semantic {
                file: path.to_path_buf(),
                message: "no HBA entry defined: add a line such as 'host all all all trust'".into(),
            });
        }
        Ok(Hba { entries })
    }

    /// The first entry for this client; `addr` is None for Unix-socket clients.
    pub fn find(&self, database: &str, user: &str, addr: Option<IpAddr>, tls: bool) -> Option<&HbaEntry> {
        self.entries.iter().find(|e| {
            (e.conn_type == ConnType::Host || tls)
                && e.database.matches(database)
                && e.user.matches(user)
                && match (e.address, addr) {
                    (Address::All, _) => true,
                    (Address::Net(net), Some(a)) => net.contains(a),
                    (Address::Net(_), None) => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hba(text: &str) -> Hba {
        Hba::parse(Path::new("hba"), text).expect("valid hba")
    }

    #[test]
    fn first_match_wins() {
        let h = hba("# c\nhost app alice 10.0.0.0/8 reject\nhost all all all trust # inline\n");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert_eq!(h.find("app", "alice", Some(ip), false).map(|e| e.method), Some(Method::Reject));
        assert_eq!(h.find("app", "bob", Some(ip), false).map(|e| e.method), Some(Method::Trust));
        assert_eq!(h.find("app", "alice", None, false).map(|e| e.line), Some(3));
    }

    #[test]
    fn cidr_bits() {
        let c = Cidr::parse("192.168.1.0/23").expect("cidr");
        assert!(c.contains("192.168.0.9".parse().expect("ip")));
        assert!(!c.contains("192.168.2.1".parse().expect("ip")));
        assert!(c.contains("::ffff:192.168.1.200".parse().expect("ip")));
        let v6 = Cidr::parse("fd00::/8").expect("cidr");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("fe80::1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("::1").expect("host").contains("::1".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0").expect("any").contains("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn hostssl_needs_tls_and_nothing_matches_nothing() {
        let h = hba("hostssl all all all trust\n");
        assert!(h.find("d", "u", None, false).is_none());
        assert!(h.find("d", "u", None, true).is_some());
        let h = hba("host db1,db2 all 127.0.0.1/32 trust\n");
        assert!(h.find("db2", "u", Some("127.0.0.1".parse().expect("ip")), false).is_some());
        assert!(h.find("db3", "u", Some("127.0.0.1".parse().expect("ip")), false).is_none());
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = Hba::parse(Path::new("h.conf"), "host all all all trust\nlocal all all all trust\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("h.conf") && err.contains("line 2") && err.contains("TYPE"), "{err}");
        assert!(Hba::parse(Path::new("h"), "host all all 300.1.1.1/8 trust\n").is_err());
        assert!(Hba::parse(Path::new("h"), "host all all all ident\n").is_err());
        assert!(Hba::parse(Path::new("h"), "host all all trust\n").is_err());
        assert!(Hba::parse(Path::new("h"), "# nothing\n").is_err());
    }
}
