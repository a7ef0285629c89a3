//! Embedded assets: content types, ETag revalidation, gzip, security headers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use std::io::Read as _;
use web::assets::Assets;

#[derive(rust_embed::Embed)]
#[folder = "tests/fixtures/assets"]
struct Fixture;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/assets");

fn on_disk(path: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{path}")).unwrap()
}

async fn body(r: Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn serves_files_with_types_and_security_headers() {
    let assets = Assets::new().with::<Fixture>("").with::<Fixture>("common/");
    for (path, file, ty) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("index.html", "index.html", "text/html; charset=utf-8"),
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/common/style.css", "style.css", "text/css; charset=utf-8"),
        ("/logo.png", "logo.png", "image/png"),
        ("/sub/note.txt", "sub/note.txt", "text/plain; charset=utf-8"),
    ] {
        let r = assets.response(path, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{path}");
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
            "{etag}"
        );
        assert_eq!(body(r).await, on_disk(file), "{path}");
    }
    let r = assets.response("/missing.js", &HeaderMap::new());
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn etag_revalidation() {
    let assets = Assets::new().with::<Fixture>("");
    let first = assets.response("/app.js", &HeaderMap::new());
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    let other = assets.response("/style.css", &HeaderMap::new());
    assert_ne!(other.headers()[header::ETAG].to_str().unwrap(), etag);

    let r = assets.response("/app.js", &headers(&[(header::IF_NONE_MATCH, &etag)]));
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()[header::ETAG].to_str().unwrap(), etag);
    assert!(body(r).await.is_empty());

    let r = assets.response("/app.js", &headers(&[(header::IF_NONE_MATCH, "\"stale\"")]));
    assert_eq!(r.status(), StatusCode::OK);

    // The gzip representation's tag also revalidates.
    let gz = assets.response("/app.js", &headers(&[(header::ACCEPT_ENCODING, "gzip")]));
    let gz_tag = gz.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(gz_tag, etag);
    let r = assets.response(
        "/app.js",
        &headers(&[
            (header::IF_NONE_MATCH, &gz_tag),
            (header::ACCEPT_ENCODING, "gzip"),
        ]),
    );
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn gzip_round_trip_and_only_when_smaller() {
    let assets = Assets::new().with::<Fixture>("");
    let accept = headers(&[(header::ACCEPT_ENCODING, "gzip, br")]);
    for file in ["index.html", "app.js", "style.css"] {
        let r = assets.response(file, &accept);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip", "{file}");
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
        let b = body(r).await;
        assert!(b.len() < on_disk(file).len());
        assert_eq!(gunzip(&b), on_disk(file), "{file}");
    }
    // Random bytes do not compress: served as they are.
    let r = assets.response("logo.png", &accept);
    assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body(r).await, on_disk("logo.png"));

    let files: Vec<(String, usize, usize)> = assets
        .files()
        .map(|(p, r, g)| (p.to_owned(), r, g))
        .collect();
    let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app.js",
            "index.html",
            "logo.png",
            "style.css",
            "sub/note.txt"
        ]
    );
    for (p, raw, gz) in &files {
        assert_eq!(*raw, on_disk(p).len());
        assert!(gz <= raw);
    }
    let total: usize = files.iter().map(|f| f.2).sum();
    assert_eq!(assets.total_gzip_bytes(), total);
    assert!(total < files.iter().map(|f| f.1).sum::<usize>());
}
