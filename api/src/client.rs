//! Who is on the other end of a request: the client's address, as the limits and the
//! sign-in defences key on it. Behind a proxy the peer is the proxy, so the address comes
//! from `X-Forwarded-For`, believed only as far back as the hops are trusted proxies
//! (`FLASHFUSION_TRUSTED_PROXIES`); a client can prepend anything it likes to that
//! header, so the address is the last hop not in the trusted list, never the first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    extract::ConnectInfo,
    http::{Extensions, HeaderMap},
};
use ipnet::IpNet;

/// The header proxies append the address they received a request from to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address for a request that arrived from `peer` with `headers`.
pub fn address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // A dual-stack listener sees an IPv4 proxy as `::ffff:a.b.c.d`; the networks are
    // written as IPv4, so addresses are compared in their canonical form.
    let is_trusted = |ip: &IpAddr| {
        let ip = ip.to_canonical();
        trusted.iter().any(|net| net.contains(&ip))
    };
    if !is_trusted(&peer) {
        return peer;
    }
    // Hops from the nearest proxy back towards the client; each header line appends.
    let hops = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| {
            line.to_str()
                .unwrap_or_default()
                .rsplit(',')
                .map(|hop| hop_address(hop.trim()))
                .collect::<Vec<_>>()
        });
    let mut client = peer;
    for hop in hops {
        match hop {
            // An unparseable hop ends what can be believed: the last good one stands.
            None => break,
            Some(hop) => {
                client = hop;
                if !is_trusted(&hop) {
                    break;
                }
            }
        }
    }
    client
}

/// The address of one `X-Forwarded-For` hop: an address, or, as some proxies write it,
/// an address with its port (`203.0.113.5:51234`, `[2001:db8::1]:443`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// The key a client address is limited by (the rate limit, the sign-in and sign-up
/// throttles): IPv6 clients are counted per /64, the block one
/// subscriber is usually given (so rotating through it gains nothing), and an
/// IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The peer address axum recorded for the connection (`serve` and the test harness
/// serve with connect info); unspecified for a router served without it.
pub fn peer(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(FORWARDED_FOR, line.parse().expect("header value"));
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_block() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(limit_key(ip("198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        assert_eq!(
            address(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            address(ip("10.0.0.1"), &headers(&["1.2.3.4"]), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn hops_written_with_their_port_are_read() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        for (hops, client) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("198.51.100.7, 10.0.0.2:80", "198.51.100.7"),
        ] {
            assert_eq!(
                address(ip("10.0.0.1"), &headers(&[hops]), &trusted),
                ip(client),
                "{hops}"
            );
        }
    }

    #[test]
    fn an_ipv4_proxy_seen_by_a_dual_stack_listener_is_trusted() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        assert_eq!(
            address(ip("::ffff:10.0.0.5"), &headers(&["198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            address(
                ip("10.0.0.5"),
                &headers(&["198.51.100.7, ::ffff:10.0.0.6"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_last_untrusted_hop_behind_trusted_proxies_is_the_client() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        // The client spoofed 6.6.6.6; the proxies appended what they saw.
        let forwarded = headers(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(
            address(ip("10.0.0.1"), &forwarded, &trusted),
            ip("198.51.100.7")
        );
        // Only trusted hops: the farthest one is the best known.
        assert_eq!(
            address(ip("10.0.0.1"), &headers(&["10.9.9.9"]), &trusted),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            address(ip("10.0.0.1"), &headers(&["nonsense, 10.2.2.2"]), &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(
            address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }
}
