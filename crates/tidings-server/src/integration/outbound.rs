//! Outgoing HTTP for webhooks, safe against server-side request forgery: a URL's host is
//! resolved once and every address checked (loopback, private, link-local, shared, multicast
//! and cloud-metadata ranges are refused unless the config allows their network); the request
//! then goes to exactly that address. Redirects are never followed, attempts time out, and at
//! most `response_cap` bytes of a response are read.

use super::WebhookConfig;
use super::error::BusError;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Longest response excerpt kept in the attempt log, in characters.
const EXCERPT_CHARS: usize = 512;

/// Checks a webhook URL's form: absolute `http` or `https`, a host, no credentials.
pub fn check_url(text: &str) -> Result<reqwest::Url, BusError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| BusError::InvalidUrl(format!("the URL does not parse: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BusError::InvalidUrl(
            "a webhook URL is http or https".into(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BusError::InvalidUrl("a webhook URL names a host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BusError::InvalidUrl(
            "a webhook URL carries no credentials; the signature authenticates us".into(),
        ));
    }
    if text.len() > 2048 {
        return Err(BusError::InvalidUrl(
            "a webhook URL is at most 2048 characters".into(),
        ));
    }
    Ok(url)
}

/// Whether an address is one a webhook must not reach by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // 169.254/16, cloud metadata included
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10, shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24, protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15, benchmarking
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 metadata included
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 of any IPv4
                || (first == 0x2001 && v6.segments()[1] == 0xdb8) // documentation
        }
    }
}

/// What one attempt got back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when given as seconds.
    pub retry_after: Option<u64>,
    /// The start of the body.
    pub excerpt: String,
    /// The body as read (up to the response cap), for a sync publish's reply.
    pub body: String,
}

/// Why an attempt got no answer.
#[derive(Debug, Clone)]
pub struct NoAnswer {
    /// `refused` (address not allowed), `timeout` or `error`.
    pub outcome: &'static str,
    /// What happened.
    pub message: String,
}

/// Sends webhook requests.
#[derive(Clone)]
pub struct Outbound {
    allow: Vec<IpNet>,
    timeout: Duration,
    cap: usize,
    /// Clients pinned to one (host, address), reused so their connections and TLS sessions
    /// are (a client per attempt would set up TLS and a connection every time).
    clients: moka::sync::Cache<(String, SocketAddr), reqwest::Client>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("allow", &self.allow)
            .field("timeout", &self.timeout)
            .field("cap", &self.cap)
            .finish()
    }
}

impl Outbound {
    /// Built from the webhook config.
    pub fn new(config: &WebhookConfig) -> Outbound {
        Outbound {
            allow: config.allow_networks.clone(),
            timeout: config.timeout,
            cap: config.response_cap,
            clients: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_idle(Duration::from_secs(300))
                .build(),
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the URL's host once and picks an address it may reach; refuses when every
    /// address is internal (and not allowed).
    pub async fn resolve(&self, url: &reqwest::Url) -> Result<SocketAddr, BusError> {
        let host = url
            .host_str()
            .ok_or_else(|| BusError::InvalidUrl("a webhook URL names a host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| BusError::InvalidUrl("a webhook URL needs a port".into()))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| BusError::InvalidUrl(format!("resolving {host:?} timed out")))?
                .map_err(|e| BusError::InvalidUrl(format!("cannot resolve {host:?}: {e}")))?
                .collect(),
        };
        // Every address must be allowed: a name that resolves to a public and a private
        // address could be made to pick the private one.
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(a.ip())) {
            return Err(BusError::UrlNotAllowed(format!(
                "{host:?} resolves to {}, an internal address webhooks may not reach",
                bad.ip()
            )));
        }
        addrs
            .first()
            .copied()
            .ok_or_else(|| BusError::InvalidUrl(format!("{host:?} has no address")))
    }

    /// POSTs `body` with `headers` to `url`, at the address resolved once.
    pub async fn post(
        &self,
        url: &str,
        headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, NoAnswer> {
        let error = |outcome: &'static str, message: String| NoAnswer { outcome, message };
        let url = check_url(url).map_err(|e| error("refused", e.to_string()))?;
        let addr = self
            .resolve(&url)
            .await
            .map_err(|e| error("refused", e.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let key = (host.clone(), addr);
        let client = match self.clients.get(&key) {
            Some(client) => client,
            None => {
                // Pinned to the address just checked: the client never resolves the name itself.
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout)
                    .resolve(&host, addr)
                    .build()
                    .map_err(|e| error("error", e.to_string()))?;
                self.clients.insert(key, client.clone());
                client
            }
        };
        let sent = client.post(url).headers(headers).body(body).send().await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(error("timeout", e.to_string())),
            Err(e) => return Err(error("error", e.to_string())),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut bytes = Vec::new();
        // Read up to the cap; a slow or endless body ends with the attempt's timeout.
        while bytes.len() < self.cap {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(error("timeout", e.to_string())),
                Err(_) => break,
            }
        }
        bytes.truncate(self.cap);
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let excerpt: String = body.chars().take(EXCERPT_CHARS).collect();
        Ok(Answer {
            status,
            retry_after,
            excerpt,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused_and_public_ones_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            assert!(is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn only_absolute_http_urls_without_credentials_pass() {
        assert!(check_url("https://hooks.example.com/x").is_ok());
        for bad in [
            "ftp://x/",
            "/relative",
            "http://user:pw@x/",
            "nonsense",
            "file:///etc/passwd",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_allowed_network_opens_only_itself() {
        let config = WebhookConfig {
            allow_networks: vec!["127.0.0.1/32".parse().expect("net")],
            ..WebhookConfig::default()
        };
        let out = Outbound::new(&config);
        let ok = check_url("http://127.0.0.1:9/").expect("url");
        assert!(out.resolve(&ok).await.is_ok());
        for refused in [
            "http://127.0.0.2:9/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9/",
        ] {
            let url = check_url(refused).expect("url");
            assert!(
                matches!(out.resolve(&url).await, Err(BusError::UrlNotAllowed(_))),
                "{refused}"
            );
        }
    }
}
