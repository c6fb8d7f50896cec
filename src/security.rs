//! HTTP hardening for every route: security headers, a CORS allow-list,
//! and rate limits on the ticketing core's `/api/` routes per credential
//! and per client IP (token buckets; over the limit is 429 with
//! `Retry-After`). The AI service's own routes are bounded by its request
//! semaphore instead (429 `overloaded`), so embedding throughput is not
//! capped per client.
//!
//! No route uses cookies (API keys and login tokens travel in the
//! `Authorization` header, which a browser never attaches by itself), so
//! there is no cookie session to protect against CSRF; CORS stays closed
//! to every origin not on the allow-list.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// Origins allowed to call from a browser (`https://desk.example.com`);
    /// `*` allows any. Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (set when served behind TLS; also
    /// sent when a proxy says `X-Forwarded-Proto: https`).
    pub hsts: bool,
    /// Requests per second per credential on `/api/` (0: no limit).
    pub rate_per_key: f64,
    pub burst_per_key: f64,
    /// Requests per second per client IP on `/api/` (0: no limit).
    pub rate_per_ip: f64,
    pub burst_per_ip: f64,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            hsts: false,
            rate_per_key: 100.0,
            burst_per_key: 200.0,
            rate_per_ip: 200.0,
            burst_per_ip: 400.0,
        }
    }
}

impl SecuritySettings {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate, burst) in [
            ("per_key", self.rate_per_key, self.burst_per_key),
            ("per_ip", self.rate_per_ip, self.burst_per_ip),
        ] {
            if !(rate.is_finite() && rate >= 0.0 && burst.is_finite()) {
                return Err(format!("security.rate_{name} must be a number ≥ 0"));
            }
            if rate > 0.0 && burst < 1.0 {
                return Err(format!("security.burst_{name} must be at least 1"));
            }
        }
        if let Some(bad) = self
            .cors_origins
            .iter()
            .find(|o| *o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(format!(
                "security.cors_origins: {bad:?} is not an origin (https://host[:port]) or *"
            ));
        }
        Ok(())
    }
}

/// Token buckets by key. Full buckets are forgotten when the map grows, so
/// memory stays bounded by the clients active in the last few seconds.
pub struct Buckets {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<String, (f64, Instant)>>,
}

const MAX_TRACKED: usize = 100_000;

impl Buckets {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            map: Mutex::default(),
        }
    }

    /// Takes one token for `key` at `now`: `Ok` or the seconds until one is
    /// available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = map.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[derive(Clone)]
pub struct Guard {
    pub settings: Arc<SecuritySettings>,
    per_key: Arc<Buckets>,
    per_ip: Arc<Buckets>,
}

impl Guard {
    pub fn new(settings: SecuritySettings) -> Self {
        Self {
            per_key: Arc::new(Buckets::new(settings.rate_per_key, settings.burst_per_key)),
            per_ip: Arc::new(Buckets::new(settings.rate_per_ip, settings.burst_per_ip)),
            settings: Arc::new(settings),
        }
    }

    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let o = origin.to_str().ok()?;
        self.settings
            .cors_origins
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(o))
            .then(|| origin.clone())
    }
}

/// The credential a request carries, as a short hash (never stored).
fn credential(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    Some(hex::encode(&Sha256::digest(v)[..12]))
}

/// The middleware: CORS preflight, rate limits, then the security headers
/// on whatever the route answered.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let origin = g.allowed_origin(req.headers());
    let https = g.settings.hsts
        || req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut response = if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        // A preflight: answered here, allowed or not (no CORS headers = denied).
        let mut r = StatusCode::NO_CONTENT.into_response();
        if origin.is_some() {
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, x-tenant-id"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        r
    } else if let Err(wait) = limit(&g, &req) {
        ApiError::RateLimited(wait).into_response()
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// The core's routes, per credential and per client IP.
fn limit(g: &Guard, req: &Request) -> Result<(), u64> {
    if !req.uri().path().starts_with("/api/") {
        return Ok(());
    }
    let now = Instant::now();
    let ip: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip {
        g.per_ip.take(&ip.to_string(), now)?;
    }
    if let Some(key) = credential(req.headers()) {
        g.per_key.take(&key, now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let b = Buckets::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.take("k", t0), Ok(()));
        }
        assert_eq!(b.take("k", t0), Err(1));
        // Another key has its own bucket.
        assert_eq!(b.take("other", t0), Ok(()));
        // Half a second later: one token (2 per second).
        assert_eq!(b.take("k", t0 + Duration::from_millis(500)), Ok(()));
        assert!(b.take("k", t0 + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long the wait.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take("k", later), Ok(()));
        }
        assert!(b.take("k", later).is_err());
        // Rate 0: no limit.
        let off = Buckets::new(0.0, 0.0);
        assert!((0..1000).all(|_| off.take("k", t0).is_ok()));
    }

    #[test]
    fn settings_reject_bad_origins_and_rates() {
        assert!(SecuritySettings::default().validate().is_ok());
        let bad_origin = SecuritySettings {
            cors_origins: vec!["desk.example.com".into()],
            ..Default::default()
        };
        assert!(bad_origin.validate().is_err());
        let bad_rate = SecuritySettings {
            rate_per_ip: -1.0,
            ..Default::default()
        };
        assert!(bad_rate.validate().is_err());
    }
}
