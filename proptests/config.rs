//! Property tests of configuration parsing: arbitrary text never panics the
//! readers, generated files read back to the values written whatever the
//! quoting and comment style, INI and TOML agree, and hba address matching
//! agrees with plain integer arithmetic.

use pgagroal::config;
use pgagroal::hba::{Cidr, Hba};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[derive(Debug, Clone)]
struct Values {
    port: u16,
    max_connections: usize,
    blocking_secs: u64,
    keep_alive: bool,
    log_prefix: String,
    server_port: u16,
}

fn values() -> impl Strategy<Value = Values> {
    (1u16.., 1usize..=10_000, 0u64..100_000, any::<bool>(), "[a-zA-Z%# ;:-]{1,20}", 1u16..).prop_map(
        |(port, max_connections, blocking_secs, keep_alive, log_prefix, server_port)| Values {
            port,
            max_connections,
            blocking_secs,
            keep_alive,
            log_prefix,
            server_port,
        },
    )
}

fn ini(v: &Values, style: u8) -> String {
    let comment = match style % 3 {
        0 => "",
        1 => " # trailing comment",
        _ => " ; trailing comment",
    };
    let boolean = match (v.keep_alive, style % 4) {
        (true, 0) => "on",
        (true, 1) => "yes",
        (true, 2) => "1",
        (true, _) => "TRUE",
        (false, 0) => "off",
        (false, 1) => "no",
        (false, 2) => "0",
        (false, _) => "False",
    };
    let blocking =
        if style.is_multiple_of(2) { format!("{}", v.blocking_secs) } else { format!("{}s", v.blocking_secs) };
    format!(
        "# generated\n[pgagroal]\nhost = *{comment}\nport = {}{comment}\nunix_socket_dir = /tmp\n\
         max_connections = {}{comment}\nblocking_timeout = {blocking}{comment}\nkeep_alive = {boolean}{comment}\n\
         log_line_prefix = \"{}\"{comment}\n\n; server\n[primary]\nhost = localhost\nport = {}{comment}\n",
        v.port, v.max_connections, v.log_prefix, v.server_port
    )
}

fn toml(v: &Values) -> String {
    format!(
        "[pgagroal]\nhost = \"*\"\nport = {}\nunix_socket_dir = \"/tmp\"\nmax_connections = {}\n\
         blocking_timeout = \"{}s\"\nkeep_alive = {}\nlog_line_prefix = '{}'\n\n[primary]\nhost = \"localhost\"\nport = {}\n",
        v.port, v.max_connections, v.blocking_secs, v.keep_alive, v.log_prefix, v.server_port
    )
}

proptest! {
    #[test]
    fn ini_and_toml_read_back_what_was_written(v in values(), style in any::<u8>()) {
        let a = config::parse(Path::new("p.conf"), &ini(&v, style)).expect("ini parses").config;
        let b = config::parse(Path::new("p.toml"), &toml(&v)).expect("toml parses").config;
        for c in [&a, &b] {
            prop_assert_eq!(c.main.port, v.port);
            prop_assert_eq!(c.main.max_connections, v.max_connections);
            prop_assert_eq!(c.main.blocking_timeout.as_secs(), v.blocking_secs);
            prop_assert_eq!(c.main.keep_alive, v.keep_alive);
            prop_assert_eq!(&c.main.log_line_prefix, &v.log_prefix);
            prop_assert_eq!(c.servers[0].port, v.server_port);
        }
        prop_assert_eq!(&a.main, &b.main);
        let key = |c: &config::Config| c.servers.iter().map(|s| (s.name.clone(), s.host.clone(), s.port, s.primary)).collect::<Vec<_>>();
        prop_assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn readers_never_panic(text in "[\\[\\]a-z=#;'\" \\n0-9._/*-]{0,400}") {
        let _ = config::parse(Path::new("p.conf"), &text);
        let _ = config::parse(Path::new("p.toml"), &text);
        let _ = Hba::parse(Path::new("h.conf"), &text);
    }

    #[test]
    fn errors_point_at_the_bad_line(v in values(), junk in "[a-z]{1,10}") {
        let good = ini(&v, 0);
        let lines: Vec<&str> = good.lines().collect();
        // Replace the max_connections line's value by junk.
        let index = lines.iter().position(|l| l.starts_with("max_connections")).expect("line");
        let mut edited: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        edited[index] = format!("max_connections = {junk}");
        let err = config::parse(Path::new("p.conf"), &edited.join("\n")).expect_err("junk is refused").to_string();
        let expected = format!("line {}", index + 1);
        prop_assert!(err.contains(&expected), "{}", err);
        prop_assert!(err.contains("max_connections"), "{}", err);
    }

    #[test]
    fn ipv4_cidr_matches_integer_arithmetic(net in any::<u32>(), prefix in 0u8..=32, addr in any::<u32>()) {
        let cidr = Cidr::parse(&format!("{}/{prefix}", Ipv4Addr::from(net))).expect("valid cidr");
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let expected = (net & mask) == (addr & mask);
        prop_assert_eq!(cidr.contains(IpAddr::V4(Ipv4Addr::from(addr))), expected);
        // The same client seen through a dual-stack socket.
        prop_assert_eq!(cidr.contains(IpAddr::V6(Ipv4Addr::from(addr).to_ipv6_mapped())), expected);
    }

    #[test]
    fn ipv6_cidr_matches_integer_arithmetic(net in any::<u128>(), prefix in 0u8..=128, addr in any::<u128>()) {
        let cidr = Cidr::parse(&format!("{}/{prefix}", Ipv6Addr::from(net))).expect("valid cidr");
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        let addr6 = Ipv6Addr::from(addr);
        if addr6.to_ipv4_mapped().is_none() {
            prop_assert_eq!(cidr.contains(IpAddr::V6(addr6)), (net & mask) == (addr & mask));
        }
    }
}
