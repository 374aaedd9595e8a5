//! `pgagroal_hba.conf`: who may connect. Lines are `TYPE DATABASE USER
//! ADDRESS METHOD` (`local` lines have no ADDRESS, as in PostgreSQL); the
//! first line that matches decides. Addresses are `all` or CIDR blocks (IPv4
//! and IPv6, matched bit by bit; a bare address is a single host).
//!
//! Types: `host` matches TCP clients with or without TLS, `hostssl` only TLS
//! ones, `hostnossl` only plain ones, `local` only Unix-socket clients. Files
//! written for upstream pgagroal have no `local` lines, so a Unix-socket
//! client also matches `host` and `hostnossl` lines whose address is `all`.

use crate::config::ConfigError;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConnType {
    /// TCP connections, plain or TLS (and Unix-socket clients on `all`).
    Host,
    /// TLS connections only.
    HostSsl,
    /// Plain TCP connections only (and Unix-socket clients on `all`).
    HostNoSsl,
    /// Unix-socket connections only.
    Local,
}

impl ConnType {
    pub fn name(self) -> &'static str {
        match self {
            ConnType::Host => "host",
            ConnType::HostSsl => "hostssl",
            ConnType::HostNoSsl => "hostnossl",
            ConnType::Local => "local",
        }
    }
}

/// How a client reached the pooler, as hba lines see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP from this address; `tls` once the handshake is done.
    Tcp { addr: IpAddr, tls: bool },
    /// The Unix socket `.s.PGSQL.<port>`.
    Unix,
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
    /// A METHOD field, any case.
    pub fn parse(token: &str) -> Option<Method> {
        Some(match token.to_ascii_lowercase().as_str() {
            "trust" => Method::Trust,
            "reject" => Method::Reject,
            "password" => Method::Password,
            "md5" => Method::Md5,
            "scram-sha-256" => Method::ScramSha256,
            "all" => Method::All,
            _ => return None,
        })
    }

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
            let conn_type = match fields[0].to_ascii_lowercase().as_str() {
                "host" => ConnType::Host,
                "hostssl" => ConnType::HostSsl,
                "hostnossl" => ConnType::HostNoSsl,
                "local" => ConnType::Local,
                _ => return Err(invalid("TYPE", &format!("host, hostssl, hostnossl or local, not '{}'", fields[0]))),
            };
            // `local DATABASE USER METHOD`; an ADDRESS of `all` is tolerated.
            let fields: Vec<&str> = match (conn_type, fields.len()) {
                (ConnType::Local, 4) => vec![fields[0], fields[1], fields[2], "all", fields[3]],
                (ConnType::Local, 5) if fields[3].eq_ignore_ascii_case("all") => fields,
                (ConnType::Local, 5) => {
                    return Err(invalid("ADDRESS", "no address on a local line (local DATABASE USER METHOD)"));
                }
                (_, 5) => fields,
                (_, found) => {
                    let shape = if conn_type == ConnType::Local {
                        "4 fields: local DATABASE USER METHOD"
                    } else {
                        "5 fields: TYPE DATABASE USER ADDRESS METHOD"
                    };
                    return Err(ConfigError::Syntax {
                        file: path.to_path_buf(),
                        line,
                        expected: format!("{shape}, found {found}"),
                    });
                }
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
            let Some(method) = Method::parse(fields[4]) else {
                return Err(invalid(
                    "METHOD",
                    &format!("trust, reject, password, md5, scram-sha-256 or all, not '{}'", fields[4]),
                ));
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

    /// The first entry for this client.
    pub fn find(&self, database: &str, user: &str, client: Transport) -> Option<&HbaEntry> {
        self.entries.iter().find(|e| {
            let transport = match (e.conn_type, client, e.address) {
                (ConnType::Local, Transport::Unix, _) => true,
                (ConnType::Local, Transport::Tcp { .. }, _) => false,
                (ConnType::Host | ConnType::HostNoSsl, Transport::Unix, Address::All) => true,
                (_, Transport::Unix, _) => false,
                (ConnType::Host, Transport::Tcp { addr, .. }, address) => address.contains(addr),
                (ConnType::HostSsl, Transport::Tcp { addr, tls }, address) => tls && address.contains(addr),
                (ConnType::HostNoSsl, Transport::Tcp { addr, tls }, address) => !tls && address.contains(addr),
            };
            transport && e.database.matches(database) && e.user.matches(user)
        })
    }
}

impl Address {
    fn contains(self, addr: IpAddr) -> bool {
        match self {
            Address::All => true,
            Address::Net(net) => net.contains(addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hba(text: &str) -> Hba {
        Hba::parse(Path::new("hba"), text).expect("valid hba")
    }

    fn tcp(ip: &str, tls: bool) -> Transport {
        Transport::Tcp { addr: ip.parse().expect("ip"), tls }
    }

    #[test]
    fn first_match_wins() {
        let h = hba("# c\nhost app alice 10.0.0.0/8 reject\nhost all all all trust # inline\n");
        assert_eq!(h.find("app", "alice", tcp("10.1.2.3", false)).map(|e| e.method), Some(Method::Reject));
        assert_eq!(h.find("app", "bob", tcp("10.1.2.3", false)).map(|e| e.method), Some(Method::Trust));
        assert_eq!(h.find("app", "alice", Transport::Unix).map(|e| e.line), Some(3));
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
    fn line_types_pick_their_transport() {
        let h = hba("hostssl all all all trust\n");
        assert!(h.find("d", "u", Transport::Unix).is_none());
        assert!(h.find("d", "u", tcp("127.0.0.1", false)).is_none());
        assert!(h.find("d", "u", tcp("127.0.0.1", true)).is_some());
        let h = hba("hostnossl all all all md5\n");
        assert!(h.find("d", "u", tcp("127.0.0.1", true)).is_none());
        assert!(h.find("d", "u", tcp("127.0.0.1", false)).is_some());
        let h = hba("local all all scram-sha-256\nhost all all 127.0.0.1/32 password\n");
        assert_eq!(h.find("d", "u", Transport::Unix).map(|e| e.method), Some(Method::ScramSha256));
        assert_eq!(h.find("d", "u", tcp("127.0.0.1", false)).map(|e| e.method), Some(Method::Password));
        // A host line with an address never matches a Unix-socket client.
        assert!(h.entries[1..].iter().all(|e| e.conn_type == ConnType::Host));
        let only_host = Hba { entries: h.entries[1..].to_vec() };
        assert!(only_host.find("d", "u", Transport::Unix).is_none());
        let h = hba("host db1,db2 all 127.0.0.1/32 trust\n");
        assert!(h.find("db2", "u", tcp("127.0.0.1", false)).is_some());
        assert!(h.find("db3", "u", tcp("127.0.0.1", false)).is_none());
        assert!(h.find("db2", "u", tcp("127.0.0.2", false)).is_none());
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = Hba::parse(Path::new("h.conf"), "host all all all trust\nhostgss all all all trust\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("h.conf") && err.contains("line 2") && err.contains("TYPE"), "{err}");
        assert!(Hba::parse(Path::new("h"), "host all all 300.1.1.1/8 trust\n").is_err());
        assert!(Hba::parse(Path::new("h"), "host all all all ident\n").is_err());
        assert!(Hba::parse(Path::new("h"), "host all all trust\n").is_err());
        assert!(Hba::parse(Path::new("h"), "local all all 10.0.0.0/8 trust\n").is_err());
        assert!(Hba::parse(Path::new("h"), "local all all\n").is_err());
        assert!(Hba::parse(Path::new("h"), "local all all all trust\n").is_ok());
        assert!(Hba::parse(Path::new("h"), "# nothing\n").is_err());
    }
}
