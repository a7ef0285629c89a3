//! Page assets embedded in the binary and served with ETags and gzip.
//!
//! Everything is prepared once at start-up (gzip at best compression, hash,
//! content type), so serving is a map lookup. `Cache-Control: no-cache`
//! makes browsers revalidate every time; with the ETag that costs a 304,
//! and an upgraded binary is never hidden behind a stale cache.

use crate::problem::Problem;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write as _;

pub const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Asset {
    raw: Bytes,
    gz: Option<Bytes>,
    etag: HeaderValue,
    /// The gzip body is a different representation, so it gets its own
    /// strong validator.
    etag_gz: HeaderValue,
    content_type: &'static str,
}

#[derive(Default)]
pub struct Assets {
    files: BTreeMap<String, Asset>,
}

impl std::fmt::Debug for Assets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assets")
            .field("files", &self.files.len())
            .finish()
    }
}

pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

/// Accept-Encoding allows gzip unless it is listed with q=0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

fn none_match(headers: &HeaderMap, tags: &[&HeaderValue]) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| {
            // If-None-Match uses the weak comparison (RFC 9110 13.1.2).
            let t = t.strip_prefix("W/").unwrap_or(t);
            t == "*" || tags.iter().any(|tag| tag.as_bytes() == t.as_bytes())
        })
}

/// Headers every asset answer carries, HTML or not.
pub fn add_security_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
}

impl Assets {
    pub fn new() -> Assets {
        Assets::default()
    }

    /// Adds every file of `E` under `prefix` ("" or e.g. "common/"); a later
    /// file with the same path replaces an earlier one.
    pub fn with<E: rust_embed::RustEmbed>(mut self, prefix: &str) -> Assets {
        for path in E::iter() {
            let Some(file) = E::get(&path) else { continue };
            let raw = match file.data {
                std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                std::borrow::Cow::Owned(v) => Bytes::from(v),
            };
            let gz = gzip(&raw).filter(|g| g.len() < raw.len()).map(Bytes::from);
            let digest = Sha256::digest(&raw);
            let hex = crate::util::hex(&digest[..16]);
            let (Ok(etag), Ok(etag_gz)) = (
                HeaderValue::from_str(&format!("\"{hex}\"")),
                HeaderValue::from_str(&format!("\"{hex}-gz\"")),
            ) else {
                continue;
            };
            let full = format!("{prefix}{path}");
            self.files.insert(
                full.clone(),
                Asset {
                    raw,
                    gz,
                    etag,
                    etag_gz,
                    content_type: content_type(&full),
                },
            );
        }
        self
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(Self::normalize(path).as_ref())
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes on the wire for a browser that accepts gzip: the gzip copy when
    /// there is one, else the raw file.
    pub fn total_gzip_bytes(&self) -> usize {
        self.files
            .values()
            .map(|a| a.gz.as_ref().map_or(a.raw.len(), Bytes::len))
            .sum()
    }

    /// `(path, raw bytes, gzip bytes)`; gzip bytes equal raw when gzip did
    /// not help and the raw file is served.
    pub fn files(&self) -> impl Iterator<Item = (&str, usize, usize)> {
        self.files.iter().map(|(p, a)| {
            (
                p.as_str(),
                a.raw.len(),
                a.gz.as_ref().map_or(a.raw.len(), Bytes::len),
            )
        })
    }

    fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
        let p = path.trim_start_matches('/');
        if p.is_empty() || p.ends_with('/') {
            std::borrow::Cow::Owned(format!("{p}index.html"))
        } else {
            std::borrow::Cow::Borrowed(p)
        }
    }

    /// The answer for a GET of `path` (with or without the leading '/').
    pub fn response(&self, path: &str, headers: &HeaderMap) -> Response {
        let Some(asset) = self.files.get(Self::normalize(path).as_ref()) else {
            let mut resp = Problem::not_found().into_response();
            add_security_headers(resp.headers_mut());
            return resp;
        };
        let gz = asset.gz.as_ref().filter(|_| accepts_gzip(headers));
        let etag = if gz.is_some() {
            &asset.etag_gz
        } else {
            &asset.etag
        };
        let mut resp = if none_match(headers, &[&asset.etag, &asset.etag_gz]) {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let body = gz.unwrap_or(&asset.raw).clone();
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            if gz.is_some() {
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        };
        let h = resp.headers_mut();
        h.insert(header::ETAG, etag.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if asset.gz.is_some() {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        add_security_headers(h);
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "*")])));
        assert!(!accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "gzip;q=0"
        )])));
        assert!(!accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "br, xgzip"
        )])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn etag_matching() {
        let tag = HeaderValue::from_static("\"abc\"");
        let m = |v: &str| none_match(&headers(&[(header::IF_NONE_MATCH, v)]), &[&tag]);
        assert!(m("\"abc\""));
        assert!(m("\"x\", W/\"abc\""));
        assert!(m("*"));
        assert!(!m("\"abcd\""));
        assert!(!m("abc"));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("f.woff2"), "font/woff2");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(Assets::normalize(""), "index.html");
        assert_eq!(Assets::normalize("/"), "index.html");
        assert_eq!(Assets::normalize("/docs/"), "docs/index.html");
        assert_eq!(Assets::normalize("/app.js"), "app.js");
    }
}
