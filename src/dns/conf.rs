//! What the stub resolver reads: /etc/resolv.conf (nameservers, search list, options) and
//! /etc/hosts, parsed the way musl reads them, with Go's defaults where musl has none.

use std::net::IpAddr;
use std::time::Duration;

use crate::hosts::is_hostname;

/// At most this many `nameserver` lines count (MAXNS of every libc).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (glibc's MAXDNSRCH).
pub const MAX_SEARCH: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// Domains tried after (or before, see `ndots`) the name itself, without trailing dots.
    pub search: Vec<String>,
    /// Names with fewer dots than this try the search list first.
    pub ndots: usize,
    /// How long one attempt waits for the answers of all nameservers.
    pub timeout: Duration,
    /// Attempts per name before giving up.
    pub attempts: u32,
}

impl ResolvConf {
    /// Reads resolv.conf's text; an empty or missing file gives the defaults. A nameserver with
    /// a `%scope` (link-local IPv6) is skipped: we do not bind to interfaces.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        for line in text.split('\n') {
            let mut words = line.split_ascii_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        if conf.nameservers.len() < MAX_NAMESERVERS {
                            conf.nameservers.push(ip);
                        }
                    }
                }
                // The last `search` or `domain` line wins, as in glibc and musl.
                Some("search" | "domain") => {
                    conf.search.clear();
                    for domain in words {
                        let domain = domain.strip_suffix('.').unwrap_or(domain);
                        if is_hostname(domain) && conf.search.len() < MAX_SEARCH {
                            conf.search.push(domain.to_ascii_lowercase());
                        }
                    }
                }
                Some("options") => {
                    for option in words {
                        let Some((key, value)) = option.split_once(':') else {
                            continue;
                        };
                        let Ok(n) = value.parse::<u32>() else {
                            continue;
                        };
                        // musl's bounds.
                        match key {
                            "ndots" => conf.ndots = n.min(15) as usize,
                            "timeout" => conf.timeout = Duration::from_secs(n.clamp(1, 60).into()),
                            "attempts" => conf.attempts = n.clamp(1, 10),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if conf.nameservers.is_empty() {
            // As musl and Go: a local resolver (dnsmasq on OpenWrt).
            conf.nameservers.push(IpAddr::from([127, 0, 0, 1]));
        }
        conf
    }
}

/// Every address /etc/hosts gives `name` (canonical name or alias, any case; a trailing dot on
/// either side ignored), in file order.
pub fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut found = Vec::new();
    for line in text.split('\n') {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_ascii_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if words.any(|w| w.strip_suffix('.').unwrap_or(w).eq_ignore_ascii_case(name))
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_are_musls_with_localhost_as_nameserver() {
        let conf = ResolvConf::parse("");
        assert_eq!(conf.nameservers, vec![ip("127.0.0.1")]);
        assert!(conf.search.is_empty());
        assert_eq!(conf.ndots, 1);
        assert_eq!(conf.timeout, Duration::from_secs(5));
        assert_eq!(conf.attempts, 2);
        // DHCP clients may write CRLF line ends.
        let crlf = ResolvConf::parse("nameserver 10.0.0.9\r\nsearch lan\r\n");
        assert_eq!(crlf.nameservers, vec![ip("10.0.0.9")]);
        assert_eq!(crlf.search, vec!["lan"]);
    }

    #[test]
    fn nameservers_search_and_options() {
        let conf = ResolvConf::parse(
            "# written by netifd\n\
             nameserver 10.0.0.1\n\
             nameserver fe80::1%eth0\n\
             nameserver   2001:db8::53 \n\
             nameserver bogus\n\
             domain old.example\n\
             search Lan. example.net bad..name\n\
             nameserver 10.0.0.2\n\
             nameserver 10.0.0.3\n\
             options ndots:2 timeout:90 attempts:0 rotate\n\
             options edns0 timeout:x\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![ip("10.0.0.1"), ip("2001:db8::53"), ip("10.0.0.2")]
        );
        assert_eq!(conf.search, vec!["lan", "example.net"]);
        assert_eq!(conf.ndots, 2);
        assert_eq!(conf.timeout, Duration::from_secs(60));
        assert_eq!(conf.attempts, 1);
    }

    #[test]
    fn hosts_names_aliases_case_and_comments() {
        let hosts = "127.0.0.1 localhost\n\
                     # 192.0.2.9 seed\n\
                     192.0.2.1\tseed.lan Seed  # the seed\n\
                     2001:db8::1 seed\n\
                     not-an-ip seed\n\
                     192.0.2.1 seed\n\
                     192.0.2.2 other seed.\n";
        assert_eq!(
            hosts_lookup(hosts, "SEED"),
            vec![ip("192.0.2.1"), ip("2001:db8::1"), ip("192.0.2.2")]
        );
        assert_eq!(hosts_lookup(hosts, "seed.lan."), vec![ip("192.0.2.1")]);
        assert!(hosts_lookup(hosts, "the").is_empty());
        assert!(hosts_lookup(hosts, "seed.lan.example").is_empty());
    }
}
