//! Which addresses a request to a customer URL may reach.
//!
//! A customer chooses the URL; the deployment chooses what it may point at. By default only public
//! unicast addresses are allowed: nothing on the host (loopback), in the deployment's network
//! (private, CGNAT, unique local), on the link (which is where cloud metadata endpoints live),
//! multicast, or in ranges IANA reserves. IPv6 forms that embed an IPv4 address (mapped, compatible,
//! NAT64) are judged by the IPv4 address they lead to; tunnel prefixes (6to4, Teredo) by what they
//! are, since where they end up cannot be told from the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a deployment lets requests to customer URLs reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow every address, private and loopback included: for a deployment whose customers are
    /// its own services, and for tests against local servers.
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Why `address` may not be reached under this policy, or `None` when it may.
    pub fn refusal(&self, address: IpAddr) -> Option<&'static str> {
        if self.allow_private { None } else { non_public_reason(address) }
    }
}

/// Why `address` is not a public unicast address, or `None` when it is one.
pub fn non_public_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(address) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn in_v6(address: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(address) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

fn v4_reason(address: Ipv4Addr) -> Option<&'static str> {
    // The ECS task metadata endpoint (169.254.170.2) and the EC2/most clouds' one.
    const METADATA: [Ipv4Addr; 2] = [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(169, 254, 170, 2)];
    // Most specific first: a broadcast address is also in 240/4, the metadata ones in 169.254/16.
    let reason = if address.is_unspecified() {
        "unspecified address"
    } else if address.is_broadcast() {
        "broadcast address"
    } else if METADATA.contains(&address) {
        "link-local address (cloud metadata endpoint)"
    } else if in_v4(address, [0, 0, 0, 0], 8) {
        "reserved address (this network)"
    } else if in_v4(address, [127, 0, 0, 0], 8) {
        "loopback address"
    } else if in_v4(address, [10, 0, 0, 0], 8)
        || in_v4(address, [172, 16, 0, 0], 12)
        || in_v4(address, [192, 168, 0, 0], 16)
    {
        "private address"
    } else if in_v4(address, [100, 64, 0, 0], 10) {
        "shared address (carrier-grade NAT)"
    } else if in_v4(address, [169, 254, 0, 0], 16) {
        "link-local address"
    } else if in_v4(address, [192, 0, 0, 0], 24) {
        "reserved address (IETF protocol assignments)"
    } else if in_v4(address, [192, 0, 2, 0], 24)
        || in_v4(address, [198, 51, 100, 0], 24)
        || in_v4(address, [203, 0, 113, 0], 24)
    {
        "documentation address"
    } else if in_v4(address, [192, 88, 99, 0], 24) {
        "reserved address (6to4 relay anycast)"
    } else if in_v4(address, [198, 18, 0, 0], 15) {
        "benchmarking address"
    } else if in_v4(address, [224, 0, 0, 0], 4) {
        "multicast address"
    } else if in_v4(address, [240, 0, 0, 0], 4) {
        "reserved address"
    } else {
        return None;
    };
    Some(reason)
}

fn v6_reason(address: Ipv6Addr) -> Option<&'static str> {
    let reason = if address.is_unspecified() {
        "unspecified address"
    } else if address.is_loopback() {
        "loopback address"
    } else if let Some(v4) = embedded_v4(address) {
        return v4_reason(v4);
    } else if in_v6(address, [0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48) {
        "reserved address (local-use NAT64)"
    } else if in_v6(address, [0xff00, 0, 0, 0, 0, 0, 0, 0], 8) {
        "multicast address"
    } else if in_v6(address, [0xfe80, 0, 0, 0, 0, 0, 0, 0], 10) {
        "link-local address"
    } else if in_v6(address, [0xfec0, 0, 0, 0, 0, 0, 0, 0], 10) {
        "site-local address"
    } else if in_v6(address, [0xfc00, 0, 0, 0, 0, 0, 0, 0], 7) {
        "private address (unique local)"
    } else if in_v6(address, [0x100, 0, 0, 0, 0, 0, 0, 0], 64) {
        "reserved address (discard-only)"
    } else if in_v6(address, [0x2001, 0, 0, 0, 0, 0, 0, 0], 32) {
        "Teredo tunnel address"
    } else if in_v6(address, [0x2001, 2, 0, 0, 0, 0, 0, 0], 48) {
        "benchmarking address"
    } else if in_v6(address, [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32)
        || in_v6(address, [0x3fff, 0, 0, 0, 0, 0, 0, 0], 20)
    {
        "documentation address"
    } else if in_v6(address, [0x2001, 0, 0, 0, 0, 0, 0, 0], 23) {
        "reserved address (IETF protocol assignments)"
    } else if in_v6(address, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        "6to4 tunnel address"
    } else if !in_v6(address, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        // Only 2000::/3 is allocated for global unicast; the rest is reserved or special-purpose.
        "reserved address (not global unicast)"
    } else {
        return None;
    };
    Some(reason)
}

/// The IPv4 address an IPv6 one leads to: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated but still routed by some stacks) and NAT64 (`64:ff9b::a.b.c.d`).
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let low = Ipv4Addr::from((u128::from(address) & 0xffff_ffff) as u32);
    let embeds = in_v6(address, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(address, [0, 0, 0, 0, 0, 0, 0, 0], 96)
        || in_v6(address, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
    embeds.then_some(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        non_public_reason(text.parse().expect("an IP address"))
    }

    /// Each address with the reason it is refused; `None` for public ones. Ranges are tested on
    /// both sides of each boundary.
    fn assert_table(table: &[(&str, Option<&str>)]) {
        for (address, want) in table {
            assert_eq!(reason(address), *want, "{address}");
        }
    }

    const PUBLIC: Option<&str> = None;

    #[test]
    fn ipv4_loopback_unspecified_and_this_network() {
        assert_table(&[
            ("127.0.0.1", Some("loopback address")),
            ("127.255.255.255", Some("loopback address")),
            ("126.255.255.255", PUBLIC),
            ("128.0.0.0", PUBLIC),
            ("0.0.0.0", Some("unspecified address")),
            ("0.1.2.3", Some("reserved address (this network)")),
            ("0.255.255.255", Some("reserved address (this network)")),
            ("1.0.0.0", PUBLIC),
        ]);
    }

    #[test]
    fn ipv4_private_ranges() {
        assert_table(&[
            ("9.255.255.255", PUBLIC),
            ("10.0.0.0", Some("private address")),
            ("10.255.255.255", Some("private address")),
            ("11.0.0.0", PUBLIC),
            ("172.15.255.255", PUBLIC),
            ("172.16.0.0", Some("private address")),
            ("172.31.255.255", Some("private address")),
            ("172.32.0.0", PUBLIC),
            ("192.167.255.255", PUBLIC),
            ("192.168.0.0", Some("private address")),
            ("192.168.255.255", Some("private address")),
            ("192.169.0.0", PUBLIC),
        ]);
    }

    #[test]
    fn ipv4_shared_address_space() {
        assert_table(&[
            ("100.63.255.255", PUBLIC),
            ("100.64.0.0", Some("shared address (carrier-grade NAT)")),
            ("100.127.255.255", Some("shared address (carrier-grade NAT)")),
            ("100.128.0.0", PUBLIC),
        ]);
    }

    #[test]
    fn ipv4_link_local_and_metadata() {
        assert_table(&[
            ("169.253.255.255", PUBLIC),
            ("169.254.0.0", Some("link-local address")),
            ("169.254.169.254", Some("link-local address (cloud metadata endpoint)")),
            ("169.254.170.2", Some("link-local address (cloud metadata endpoint)")),
            ("169.254.255.255", Some("link-local address")),
            ("169.255.0.0", PUBLIC),
        ]);
    }

    #[test]
    fn ipv4_documentation_benchmarking_and_reserved() {
        assert_table(&[
            ("191.255.255.255", PUBLIC),
            ("192.0.0.0", Some("reserved address (IETF protocol assignments)")),
            ("192.0.0.255", Some("reserved address (IETF protocol assignments)")),
            ("192.0.1.0", PUBLIC),
            ("192.0.2.0", Some("documentation address")),
            ("192.0.2.255", Some("documentation address")),
            ("192.0.3.0", PUBLIC),
            ("192.88.98.255", PUBLIC),
            ("192.88.99.1", Some("reserved address (6to4 relay anycast)")),
            ("192.88.100.0", PUBLIC),
            ("198.17.255.255", PUBLIC),
            ("198.18.0.0", Some("benchmarking address")),
            ("198.19.255.255", Some("benchmarking address")),
            ("198.20.0.0", PUBLIC),
            ("198.51.99.255", PUBLIC),
            ("198.51.100.0", Some("documentation address")),
            ("198.51.100.255", Some("documentation address")),
            ("198.51.101.0", PUBLIC),
            ("203.0.112.255", PUBLIC),
            ("203.0.113.0", Some("documentation address")),
            ("203.0.113.255", Some("documentation address")),
            ("203.0.114.0", PUBLIC),
        ]);
    }

    #[test]
    fn ipv4_multicast_reserved_and_broadcast() {
        assert_table(&[
            ("223.255.255.255", PUBLIC),
            ("224.0.0.0", Some("multicast address")),
            ("239.255.255.255", Some("multicast address")),
            ("240.0.0.0", Some("reserved address")),
            ("255.255.255.254", Some("reserved address")),
            ("255.255.255.255", Some("broadcast address")),
        ]);
    }

    #[test]
    fn ipv4_public_addresses_pass() {
        assert_table(&[("1.1.1.1", PUBLIC), ("8.8.8.8", PUBLIC), ("93.184.215.14", PUBLIC)]);
    }

    #[test]
    fn ipv6_special_addresses() {
        assert_table(&[
            ("::", Some("unspecified address")),
            ("::1", Some("loopback address")),
            ("ff02::1", Some("multicast address")),
            ("ff00::", Some("multicast address")),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("site-local address")),
            ("fe80::", Some("link-local address")),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("link-local address")),
            ("fec0::1", Some("site-local address")),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved address (not global unicast)")),
            ("fc00::", Some("private address (unique local)")),
            ("fd00:ec2::254", Some("private address (unique local)")),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("private address (unique local)")),
            ("100::1", Some("reserved address (discard-only)")),
        ]);
    }

    #[test]
    fn ipv6_embedded_ipv4_is_judged_by_the_ipv4_address() {
        assert_table(&[
            ("::ffff:127.0.0.1", Some("loopback address")),
            ("::ffff:10.1.2.3", Some("private address")),
            ("::ffff:169.254.169.254", Some("link-local address (cloud metadata endpoint)")),
            ("::ffff:8.8.8.8", PUBLIC),
            ("::127.0.0.1", Some("loopback address")),
            ("::192.168.1.1", Some("private address")),
            ("::8.8.8.8", PUBLIC),
            ("64:ff9b::7f00:1", Some("loopback address")),
            ("64:ff9b::a9fe:a9fe", Some("link-local address (cloud metadata endpoint)")),
            ("64:ff9b::808:808", PUBLIC),
            // Just outside the /96s: not embedded forms, and not global unicast either.
            ("::1:0:0:0", Some("reserved address (not global unicast)")),
            ("64:ff9b::1:0:0", Some("reserved address (not global unicast)")),
            ("64:ff9b:1::1", Some("reserved address (local-use NAT64)")),
        ]);
    }

    #[test]
    fn ipv6_tunnels_documentation_and_reserved() {
        assert_table(&[
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved address (not global unicast)")),
            ("2001::1", Some("Teredo tunnel address")),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some("Teredo tunnel address")),
            ("2001:2::1", Some("benchmarking address")),
            ("2001:2:1::", Some("reserved address (IETF protocol assignments)")),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved address (IETF protocol assignments)")),
            ("2001:200::1", PUBLIC),
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", PUBLIC),
            ("2001:db8::1", Some("documentation address")),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Some("documentation address")),
            ("2001:db9::", PUBLIC),
            ("2002::1", Some("6to4 tunnel address")),
            ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("6to4 tunnel address")),
            ("2003::1", PUBLIC),
            ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUBLIC),
            ("3fff::1", Some("documentation address")),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Some("documentation address")),
            ("3fff:1000::", PUBLIC),
            ("4000::1", Some("reserved address (not global unicast)")),
            ("5f00::1", Some("reserved address (not global unicast)")),
        ]);
    }

    #[test]
    fn ipv6_public_addresses_pass() {
        assert_table(&[("2606:4700:4700::1111", PUBLIC), ("2a00:1450:4001:82a::200e", PUBLIC)]);
    }

    #[test]
    fn allowing_private_targets_allows_every_address() {
        let open = TargetPolicy { allow_private: true };
        let strict = TargetPolicy::default();
        for address in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fd00::1"] {
            let address = address.parse().unwrap();
            assert_eq!(open.refusal(address), None, "{address}");
            assert!(strict.refusal(address).is_some(), "{address}");
        }
    }
}
