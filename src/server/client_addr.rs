//! Whose request this is, by address: the connection's peer, or — when that peer is a proxy
//! the operator named in `--trusted-proxies` — the client the proxy says it forwards for.
//! Everything that records or limits by address (access log, audit events, leases) reads
//! the one [`ClientAddr`] set here, so they never disagree.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address, as decided once per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The proxies whose forwarding headers are believed. Empty (the default): none are, and the
/// peer address is the client's.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `CIDR,CIDR,…`; a bare address is a network of one.
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = IpNet::from_str(part)
                .or_else(|_| IpAddr::from_str(part).map(IpNet::from))
                .map_err(|_| {
                    format!("{part:?} is not an IP address or network (10.0.0.0/8, ::1, ...)")
                })?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    ///
    /// From a trusted peer, `X-Forwarded-For` is read from the right (the hop nearest to us)
    /// and the first address that is not itself a trusted proxy is the client: entries to
    /// its left were written by the client or by proxies we know nothing of, so they are not
    /// believed. Without that header, `X-Real-IP`. A header that does not parse ends the
    /// walk at the last address that did.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientAddr {
        let mut client = canonical(peer.ip());
        if !self.trusts(client) {
            return ClientAddr(client);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if hops.is_empty() {
            if let Some(ip) = headers
                .get("x-real-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_hop)
            {
                client = ip;
            }
            return ClientAddr(client);
        }
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        ClientAddr(client)
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(canonical(ip));
    }
    SocketAddr::from_str(s).ok().map(|a| canonical(a.ip()))
}

/// IPv4 peers on a dual-stack socket arrive as `::ffff:a.b.c.d`; compare them as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 40000)
    }

    fn ip(s: &str) -> ClientAddr {
        ClientAddr(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let none = TrustedProxies::default();
        let h = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "1.1.1.1")]);
        assert_eq!(none.client(peer("10.0.0.5"), &h), ip("10.0.0.5"));
        let some = TrustedProxies::parse("10.1.0.0/16").unwrap();
        assert_eq!(some.client(peer("10.0.0.5"), &h), ip("10.0.0.5"));
    }

    #[test]
    fn forwarded_for_is_walked_from_the_nearest_hop() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        // The client forged the leftmost entry; the proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.2.3.4")]);
        assert_eq!(t.client(peer("192.168.1.1"), &h), ip("198.51.100.7"));
        // Two header lines read as one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7:5555"),
        ]);
        assert_eq!(t.client(peer("10.0.0.1"), &h), ip("198.51.100.7"));
        // All hops trusted: the leftmost is as far as we can see.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.8.8.8")]);
        assert_eq!(t.client(peer("10.0.0.1"), &h), ip("10.9.9.9"));
        // Garbage stops the walk at the last hop that parsed.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 10.2.3.4")]);
        assert_eq!(t.client(peer("10.0.0.1"), &h), ip("10.2.3.4"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(t.client(peer("10.0.0.1"), &h), ip("2001:db8::1"));
    }

    #[test]
    fn real_ip_only_without_forwarded_for() {
        let t = TrustedProxies::parse("127.0.0.1/32").unwrap();
        let h = headers(&[("x-real-ip", "198.51.100.8")]);
        assert_eq!(t.client(peer("127.0.0.1"), &h), ip("198.51.100.8"));
        let h = headers(&[("x-real-ip", "not an address")]);
        assert_eq!(t.client(peer("127.0.0.1"), &h), ip("127.0.0.1"));
        // A v4-mapped peer is matched against v4 networks.
        assert_eq!(
            t.client(peer("::ffff:127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
