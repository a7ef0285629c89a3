//! Request rate limits, per client address and per API token, and who the
//! client is behind a reverse proxy.
//!
//! - **Client address**: the TCP peer, unless the peer is one of the
//!   configured trusted proxies; then the right-most address in
//!   `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends
//!   the address it received from, so everything left of the first untrusted
//!   hop may be made up by the client). A header from any other peer is
//!   ignored. [`layer`] puts the result in the request as [`ClientIp`], which
//!   [`crate::routes::client_addr`] (login throttle, audit, `Caller`) reads.
//! - **Per address**: `tower_governor`'s layer with a GCRA bucket per client
//!   address (IPv6 per /64, as the login throttle counts), on every request.
//! - **Per token**: checked by the access guard once the token is found
//!   valid ([`RateLimit::check_token`]), so made-up token ids cannot create
//!   buckets.
//!
//! Over a limit: 429 `application/problem+json` with `Retry-After`. Idle
//! buckets are dropped every minute, so memory follows the clients active in
//! the last few seconds, not every address ever seen.

use crate::problem::Problem;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

/// How often idle buckets are dropped.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// The limits as configured (`[web] rate_limit`, `rate_burst`, `trusted_proxies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateConfig {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once above the rate.
    pub burst: u32,
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            per_second: 200,
            burst: 400,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The client's address as resolved by [`layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The limits of one server (`AuthCore::rate`).
pub struct RateLimit {
    config: RateConfig,
    trusted: Arc<[IpAddr]>,
    tokens: Arc<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("config", &self.config)
            .field("token_buckets", &self.tokens.len())
            .finish()
    }
}

fn period(per_second: u32) -> Duration {
    Duration::from_nanos(1_000_000_000 / u64::from(per_second.max(1))).max(Duration::from_nanos(1))
}

impl RateLimit {
    pub fn new(config: RateConfig) -> Result<Arc<RateLimit>, crate::WebError> {
        let burst = NonZeroU32::new(config.burst)
            .ok_or_else(|| crate::WebError::Invalid("rate_burst must be at least 1".into()))?;
        if config.per_second == 0 {
            return Err(crate::WebError::Invalid(
                "rate_limit must be at least 1".into(),
            ));
        }
        let quota = Quota::with_period(period(config.per_second))
            .ok_or_else(|| crate::WebError::Invalid("rate_limit is out of range".into()))?
            .allow_burst(burst);
        Ok(Arc::new(RateLimit {
            trusted: config
                .trusted_proxies
                .iter()
                .map(|a| a.to_canonical())
                .collect(),
            tokens: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            config,
        }))
    }

    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// One request made with the token `id`; `Err(wait)` over the limit.
    pub fn check_token(&self, id: &str) -> Result<(), Duration> {
        self.tokens
            .check_key(&id.to_owned())
            .map_err(|n| n.wait_time_from(DefaultClock::default().now()))
    }

    /// Resolves the client address of every request (see the module
    /// docs) and limits each address; use on the whole router, after
    /// `with_state`, so pages and assets count too.
    pub fn layer(self: &Arc<Self>, router: Router) -> Router {
        let key = AddrKey {
            trusted: self.trusted.clone(),
        };
        let mut builder = GovernorConfigBuilder::default().key_extractor(key);
        builder
            .period(period(self.config.per_second))
            .burst_size(self.config.burst);
        let Some(config) = builder.finish() else {
            // new() refused zero rates, the only way finish() fails.
            tracing::error!("rate limit configuration refused; requests are not limited");
            return router;
        };
        let addr_limiter = Arc::downgrade(config.limiter());
        let tokens = Arc::downgrade(&self.tokens);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            // Weak references: the task ends with the router.
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(CLEANUP_EVERY).await;
                    match (addr_limiter.upgrade(), tokens.upgrade()) {
                        (Some(a), Some(t)) => {
                            a.retain_recent();
                            t.retain_recent();
                        }
                        _ => break,
                    }
                }
            });
        }
        let governor = GovernorLayer::new(config).error_handler(too_many);
        router
            .layer(governor)
            .layer(from_fn_with_state(self.trusted.clone(), resolve))
    }
}

/// The 429 answer of the address limit.
fn too_many(e: GovernorError) -> Response {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            // tower_governor rounds the wait down to whole seconds.
            rate_limited(
                Duration::from_secs(wait_time) + Duration::from_millis(999),
                "address",
            )
        }
        other => {
            tracing::error!(error = %other, "rate limiter failed");
            Problem::internal("internal error; see the server log").into_response()
        }
    }
}

/// 429 problem+json with `Retry-After` for a request over the `what` limit.
pub fn rate_limited(wait: Duration, what: &str) -> Response {
    let mut p = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many requests from this {what}; slow down and retry after the Retry-After header's seconds"
        ),
    );
    p.retry_after = Some(wait);
    p.into_response()
}

async fn resolve(State(trusted): State<Arc<[IpAddr]>>, mut req: Request, next: Next) -> Response {
    if let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let ip = client_ip(peer, req.headers(), &trusted);
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

/// The client of a request from `peer` (see the module docs). `trusted`
/// holds canonical addresses (IPv4-mapped IPv6 as IPv4).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An entry a trusted proxy wrote that we cannot read ("unknown", a
        // hostname): the client is as far as we can tell the last hop read.
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !trusted.contains(&ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// The bucket of an address: IPv6 per /64, since one host usually holds a
/// whole /64 to rotate through.
pub fn bucket(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// `tower_governor` key: the client address's bucket. A request without a
/// peer address (not served by [`crate::serve`]) shares one bucket.
#[derive(Debug, Clone)]
pub struct AddrKey {
    trusted: Arc<[IpAddr]>,
}

impl KeyExtractor for AddrKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        let ip = match req.extensions().get::<ClientIp>() {
            Some(c) => c.0,
            None => req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| client_ip(c.0.ip(), req.headers(), &self.trusted))
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        };
        Ok(bucket(ip))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let h = xff(&["198.51.100.9, 203.0.113.5"]);
        // Untrusted peer: its header is ignored.
        assert_eq!(client_ip(ip("192.0.2.1"), &h, &trusted), ip("192.0.2.1"));
        // Trusted peer: the right-most untrusted hop, not the left-most
        // (which the client wrote itself).
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.5"));
        // A chain of trusted proxies is walked through.
        let h = xff(&["198.51.100.9, 203.0.113.5, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.5"));
        // Several headers are one list, in order.
        let h = xff(&["198.51.100.9", "203.0.113.5:4711", "10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.5"));
        // No header, or an unreadable hop: the last address we trust to be real.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        let h = xff(&["203.0.113.5, unknown"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        // IPv6 forms and IPv4-mapped peers.
        let h = xff(&["[2001:db8::7]:443"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("2001:db8::7")
        );
        // All hops trusted: the left-most.
        let h = xff(&["10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(bucket(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(bucket(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn token_buckets_refill() {
        let rl = RateLimit::new(RateConfig {
            per_second: 1,
            burst: 2,
            trusted_proxies: vec![],
        })
        .unwrap();
        assert!(rl.check_token("a").is_ok());
        assert!(rl.check_token("a").is_ok());
        let wait = rl.check_token("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(rl.check_token("b").is_ok(), "buckets are per token");
        assert!(
            RateLimit::new(RateConfig {
                per_second: 0,
                ..RateConfig::default()
            })
            .is_err()
        );
        assert!(
            RateLimit::new(RateConfig {
                burst: 0,
                ..RateConfig::default()
            })
            .is_err()
        );
    }
}
