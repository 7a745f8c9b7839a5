//! Where ghostcard may send requests of its own (webhook deliveries; later, decision requests): URLs that a holder of
//! an API key chooses, so they must not reach into the network ghostcard runs in (server-side request forgery:
//! cloud metadata at 169.254.169.254, the database, an admin port on loopback).
//!
//! Live mode allows only `https` to public addresses. Sandbox mode also allows `http` and loopback, which tests and
//! local trials need; private, link-local and other reserved addresses are refused in both. A URL is checked when it
//! is registered and again at every connection: the HTTP client resolves names through [`Resolver`], which drops
//! every address that is not allowed, so a name that resolved to a public address at registration and to an
//! internal one later (DNS rebinding) reaches nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Mode;

/// How long the check at registration waits for a name to resolve.
const REGISTRATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a URL is refused, in words for the API's error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL must be an absolute http:// or https:// URL with a host")]
    Malformed,
    #[error("live mode sends only to https:// URLs")]
    NotHttps,
    #[error("the URL may not carry a user name or password; put credentials in the receiver's own configuration")]
    Credentials,
    #[error("the URL points to {0}; requests go only to public addresses{1}")]
    NotPublic(&'static str, &'static str),
}

/// What kind of address `address` is, when it is not a public one.
pub fn non_public_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(address) => non_public_v4(address),
        IpAddr::V6(address) => non_public_v6(address),
    }
}

fn non_public_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    Some(match (a, b, c) {
        (127, _, _) => "a loopback address",
        (10, _, _) | (192, 168, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (169, 254, _) => "a link-local address (such as cloud metadata)",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (0, _, _) => "an unspecified address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (192, 88, 99) => "a reserved address",
        (198, 18..=19, _) => "a reserved address",
        _ => return None,
    })
}

fn non_public_v6(address: Ipv6Addr) -> Option<&'static str> {
    if let Some(embedded) = address.to_ipv4_mapped() {
        return non_public_v4(embedded);
    }
    let segments = address.segments();
    Some(match segments {
        [0, 0, 0, 0, 0, 0, 0, 1] => "a loopback address",
        [0, 0, 0, 0, 0, 0, 0, 0] => "an unspecified address",
        // IPv4-compatible (deprecated) and NAT64 addresses reach the IPv4 address they carry.
        [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            let [high, low] = [segments[6], segments[7]];
            let embedded = Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
            return non_public_v4(embedded).or(Some("a translated address"));
        }
        [first, ..] if first & 0xfe00 == 0xfc00 => "a private (unique local) address",
        [first, ..] if first & 0xffc0 == 0xfe80 => "a link-local address",
        [first, ..] if first & 0xffc0 == 0xfec0 => "a site-local address",
        [first, ..] if first & 0xff00 == 0xff00 => "a multicast address",
        [0x2001, 0x0db8, ..] => "a documentation address",
        [0x2001, 0, ..] | [0x2002, ..] => "a tunnelled address",
        [0x0100, 0, 0, 0, ..] => "a discard address",
        _ => return None,
    })
}

/// True when `mode` lets requests go to `address`.
pub fn allowed(address: IpAddr, mode: Mode) -> Result<(), UrlError> {
    match non_public_kind(address) {
        None => Ok(()),
        Some("a loopback address") if mode == Mode::Sandbox => Ok(()),
        Some(kind) => Err(UrlError::NotPublic(kind, hint(mode, kind))),
    }
}

fn hint(mode: Mode, kind: &str) -> &'static str {
    if mode == Mode::Live && kind == "a loopback address" { " (sandbox mode also allows loopback)" } else { "" }
}

/// Checks what can be checked of `text` without the network: scheme, host, no credentials, and an address host (or
/// `localhost`) that is allowed.
pub fn check_url(text: &str, mode: Mode) -> Result<Url, UrlError> {
    let url = Url::parse(text.trim()).map_err(|_| UrlError::Malformed)?;
    match (url.scheme(), mode) {
        ("https", _) | ("http", Mode::Sandbox) => {}
        ("http", Mode::Live) => return Err(UrlError::NotHttps),
        _ => return Err(UrlError::Malformed),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = url.host_str().ok_or(UrlError::Malformed)?;
    // The parser has already turned every spelling of an address (`0x7f.1`, `2130706433`) into its usual form.
    if let Ok(address) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        allowed(address, mode)?;
    } else {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            allowed(IpAddr::V4(Ipv4Addr::LOCALHOST), mode)?;
        }
    }
    Ok(url)
}

/// [`check_url`], then, for a host name, the addresses it resolves to now: every one must be allowed. A name that
/// does not resolve (yet) is accepted; the check at connection time still applies.
pub async fn check_url_now(text: &str, mode: Mode) -> Result<Url, UrlError> {
    let url = check_url(text, mode)?;
    let host = url.host_str().unwrap_or_default();
    let is_name = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_err();
    if let (true, Some(port)) = (is_name, url.port_or_known_default()) {
        let lookup = tokio::net::lookup_host((host.to_owned(), port));
        if let Ok(Ok(addresses)) = tokio::time::timeout(REGISTRATION_LOOKUP_TIMEOUT, lookup).await {
            for address in addresses {
                allowed(address.ip(), mode)?;
            }
        }
    }
    Ok(url)
}

/// The name resolver of ghostcard's outgoing HTTP client: the system's, without the addresses `mode` does not
/// allow. A name left with none fails to connect.
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    pub mode: Mode,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let mode = self.mode;
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addresses: Vec<SocketAddr> = resolved.filter(|address| allowed(address.ip(), mode).is_ok()).collect();
            if addresses.is_empty() {
                return Err(format!("{} resolves to no address that requests may go to", name.as_str()).into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for requests to URLs that API callers chose: names resolved by [`Resolver`], no redirects (a
/// redirect could point anywhere), and `timeout` for the whole request.
pub fn client(mode: Mode, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(Resolver { mode }))
        .no_proxy()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_named_and_public_ones_pass() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
            "2001:db8::1",
            "ff02::1",
        ] {
            let address: IpAddr = internal.parse().expect("an address");
            assert!(non_public_kind(address).is_some(), "{internal} is not public");
        }
        for public in ["8.8.8.8", "172.32.0.1", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"] {
            let address: IpAddr = public.parse().expect("an address");
            assert_eq!(non_public_kind(address), None, "{public} is public");
        }
    }

    #[test]
    fn live_mode_allows_only_https_to_public_hosts() {
        assert!(check_url("https://hooks.example.com/ghostcard", Mode::Live).is_ok());
        assert!(check_url("https://93.184.216.34:8443/x", Mode::Live).is_ok());
        assert_eq!(check_url("http://hooks.example.com/", Mode::Live), Err(UrlError::NotHttps));
        assert!(matches!(check_url("https://127.0.0.1/", Mode::Live), Err(UrlError::NotPublic(..))));
        assert!(matches!(check_url("https://localhost:9000/", Mode::Live), Err(UrlError::NotPublic(..))));
        assert!(matches!(check_url("https://[::1]/", Mode::Live), Err(UrlError::NotPublic(..))));
        assert!(matches!(
            check_url("https://169.254.169.254/latest/meta-data", Mode::Live),
            Err(UrlError::NotPublic(..))
        ));
        assert!(matches!(check_url("https://0x7f.1/", Mode::Live), Err(UrlError::NotPublic(..))), "hex form");
        assert!(matches!(check_url("https://2130706433/", Mode::Live), Err(UrlError::NotPublic(..))), "decimal form");
        assert_eq!(check_url("https://user:pw@example.com/", Mode::Live), Err(UrlError::Credentials));
        assert_eq!(check_url("ftp://example.com/", Mode::Live), Err(UrlError::Malformed));
        assert_eq!(check_url("file:///etc/passwd", Mode::Sandbox), Err(UrlError::Malformed));
        assert_eq!(check_url("not a url", Mode::Sandbox), Err(UrlError::Malformed));
    }

    #[test]
    fn sandbox_mode_also_allows_http_and_loopback_but_nothing_internal() {
        assert!(check_url("http://127.0.0.1:9000/hooks", Mode::Sandbox).is_ok());
        assert!(check_url("http://localhost:9000/hooks", Mode::Sandbox).is_ok());
        assert!(check_url("http://[::1]:9000/hooks", Mode::Sandbox).is_ok());
        assert!(matches!(check_url("http://169.254.169.254/", Mode::Sandbox), Err(UrlError::NotPublic(..))));
        assert!(matches!(check_url("http://10.0.0.5/", Mode::Sandbox), Err(UrlError::NotPublic(..))));
        assert!(matches!(check_url("http://[fd00:ec2::254]/", Mode::Sandbox), Err(UrlError::NotPublic(..))));
    }

    #[tokio::test]
    async fn the_resolver_drops_addresses_that_are_not_allowed() {
        let resolver = Resolver { mode: Mode::Live };
        let name: Name = "localhost".parse().expect("a name");
        assert!(resolver.resolve(name).await.is_err(), "localhost resolves only to loopback");
        let sandbox = Resolver { mode: Mode::Sandbox };
        let addresses: Vec<SocketAddr> =
            sandbox.resolve("localhost".parse().expect("a name")).await.expect("loopback is allowed").collect();
        assert!(addresses.iter().all(|address| address.ip().is_loopback()) && !addresses.is_empty());
    }
}
