//! The SSRF guard: which addresses a webhook may reach, checked on the
//! addresses a host **resolves** to, at submission and again at every send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::WebhookCheck;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// How long a submission waits for its webhook host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `ip` is an address a webhook must not reach unless the deployment
/// allows private addresses: loopback, private (RFC 1918), link-local (which
/// holds the cloud metadata address 169.254.169.254), unique-local
/// (`fc00::/7`, with `fd00:ec2::254`), CGNAT (`100.64.0.0/10`),
/// unspecified, broadcast, multicast and reserved ranges — also when an IPv6
/// address embeds such an IPv4 one (mapped, compatible, NAT64, 6to4).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // "This network", 0.0.0.0/8.
        || a == 0
        // Shared address space (CGNAT), 100.64.0.0/10.
        || (a == 100 && (b & 0xc0) == 64)
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b & 0xfe) == 18)
        // Reserved, 240.0.0.0/4.
        || a >= 240
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local, fc00::/7.
        || (first & 0xfe00) == 0xfc00
        // Link-local, fe80::/10, and the deprecated site-local, fec0::/10.
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Documentation, 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
}

/// The IPv4 address an IPv6 one carries: mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(tail(s[1], s[2]));
    }
    None
}

/// The deployment's address policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Private addresses may be reached (a deployment whose receivers are on
    /// its own network; tests on loopback). Off by default.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Whether `ip` may be reached.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_private(ip)
    }

    /// Checks a URL without resolving it: `http` or `https`, a host, and, when
    /// the host is an IP literal (which no resolver sees), an allowed one.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        match url.host() {
            None => Err("must name a host".into()),
            Some(url::Host::Ipv4(v4)) if !self.allows(IpAddr::V4(v4)) => {
                Err("must not point to a private address".into())
            }
            Some(url::Host::Ipv6(v6)) if !self.allows(IpAddr::V6(v6)) => {
                Err("must not point to a private address".into())
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks `url` at submission: [`AddressPolicy::check_url`], then, unless
    /// private addresses are allowed, resolves its host and refuses it if
    /// **any** address it resolves to is private (or if it does not resolve).
    pub async fn check_submitted(&self, url: &str) -> Result<(), String> {
        let parsed = Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
        self.check_url(&parsed)?;
        if self.allow_private {
            return Ok(());
        }
        let Some(url::Host::Domain(host)) = parsed.host() else {
            return Ok(());
        };
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| format!("its host `{host}` did not resolve in time"))?
                .map_err(|_| format!("its host `{host}` does not resolve"))?
                .collect();
        if addrs.is_empty() {
            return Err(format!("its host `{host}` does not resolve"));
        }
        if addrs.iter().any(|a| !self.allows(a.ip())) {
            return Err(format!("its host `{host}` resolves to a private address"));
        }
        Ok(())
    }
}

/// The engine's check of a job's webhook URL at submission
/// ([`WebhookCheck`]), with the deployment's [`AddressPolicy`].
#[derive(Clone, Debug, Default)]
pub struct UrlGuard {
    policy: AddressPolicy,
}

impl UrlGuard {
    /// A guard with `policy`.
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

#[async_trait]
impl WebhookCheck for UrlGuard {
    async fn check(&self, url: &str) -> Result<(), String> {
        self.policy.check_submitted(url).await
    }
}

/// A [`Resolve`] for the dispatcher's HTTP client: resolves with the
/// system's resolver and drops every address the policy refuses, so a name
/// that resolves (or is rebound) to a private address is never connected to.
/// A name left with no address fails to resolve, saying why.
#[derive(Clone, Debug, Default)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl GuardedResolver {
    /// A resolver with `policy`.
    pub fn new(policy: AddressPolicy) -> Arc<Self> {
        Arc::new(Self { policy })
    }
}

/// Why a guarded resolution failed.
#[derive(Debug, thiserror::Error)]
#[error("`{host}` resolves only to private addresses, which this deployment does not allow")]
pub struct RefusedAddress {
    host: String,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if allowed.is_empty() && !resolved.is_empty() {
                return Err(Box::new(RefusedAddress { host }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn private_addresses_are_recognised() {
        for s in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(is_private(ip(s)), "{s} is private");
            assert!(!AddressPolicy::default().allows(ip(s)), "{s}");
            assert!(AddressPolicy {
                allow_private: true
            }
            .allows(ip(s)));
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::",
        ] {
            assert!(!is_private(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn urls_are_checked_before_resolving() {
        let policy = AddressPolicy::default();
        let check = |u: &str| policy.check_url(&Url::parse(u).expect("url"));
        assert!(check("https://example.com/hook").is_ok());
        assert!(check("http://93.184.216.34/hook").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_submission() {
        let policy = AddressPolicy::default();
        let err = policy
            .check_submitted("http://localhost:9/hook")
            .await
            .expect_err("localhost is loopback");
        assert!(err.contains("private"), "{err}");
        let open = AddressPolicy {
            allow_private: true,
        };
        assert!(open
            .check_submitted("http://localhost:9/hook")
            .await
            .is_ok());
        assert!(policy.check_submitted("not a url").await.is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_private_addresses() {
        let guarded = GuardedResolver::new(AddressPolicy::default());
        let err = match guarded.resolve("localhost".parse().expect("name")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(err.to_string().contains("private"), "{err}");
        let open = GuardedResolver::new(AddressPolicy {
            allow_private: true,
        });
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().expect("name"))
            .await
            .expect("allowed")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
    }
}
