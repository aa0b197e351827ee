//! Who may talk to the server: the bearer token, the `Host` allow-list that keeps a loopback
//! server out of reach of DNS rebinding, cross-site request forgery protection, CORS only
//! when asked for, and the headers every answer carries.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::csrf::{CsrfLayer, ProtectionError};

use super::errors::ApiError;

/// The access rules of a server.
#[derive(Debug, Clone)]
pub struct Access {
    /// SHA-256 of the bearer token, when one is required.
    token: Option<[u8; 32]>,
    /// `Host` values accepted (loopback servers without a token); `None` accepts any.
    hosts: Option<Vec<String>>,
}

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl Access {
    /// The rules of a server listening on `addr`: a token is required off loopback, and a
    /// loopback server without one accepts only its own addresses as `Host`.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Result<Self, String> {
        if let Some(token) = token
            && token.len() < MIN_TOKEN_LEN
        {
            return Err(format!(
                "the token is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. 32 random hex digits)",
                token.len()
            ));
        }
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is reachable from other machines: give a token with --token-file, \
                 DIFFBIR_SERVE_TOKEN or --token, or listen on 127.0.0.1"
            ));
        }
        let hosts = token.is_none().then(|| {
            let port = addr.port();
            vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ]
        });
        Ok(Self {
            token: token.map(digest),
            hosts,
        })
    }

    /// Whether `authorization` (a header value) carries the token; compares digests in
    /// constant time.
    fn authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| digest(t.trim()));
        given.is_some_and(|given| {
            given
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        })
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks `Host` and the token, then adds the security headers to the answer.
pub async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &access.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !host.is_some_and(|h| hosts.iter().any(|allowed| allowed == h)) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_host",
                format!("this server answers requests for {} only", hosts.join(", ")),
            )
            .into_response();
        }
    }
    let path = request.uri().path();
    let protected = path.starts_with("/v1/") || path == "/metrics";
    if protected
        && request.method() != Method::OPTIONS
        && !access.authorized(request.headers().get(header::AUTHORIZATION))
    {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs its token: send `Authorization: Bearer TOKEN`",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; \
             frame-ancestors 'none'",
        ),
    );
    response
}

/// Refuses cross-site `POST`s and `DELETE`s (a page elsewhere could otherwise submit forms
/// to a server on loopback), with a JSON error; `cors_origin` is trusted.
pub fn csrf(
    cors_origin: Option<&str>,
) -> Result<CsrfLayer<impl FnMut(ProtectionError) -> Response<Body> + Clone + use<>>, String> {
    let mut layer = CsrfLayer::new();
    if let Some(origin) = cors_origin {
        layer = layer
            .add_trusted_origin(origin)
            .map_err(|e| format!("--cors-origin {origin}: {e}"))?;
    }
    Ok(layer.with_rejection_response(|_: ProtectionError| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "cross-site requests are refused; use the server's own page, or start it with \
             --cors-origin for another origin",
        )
        .into_response()
    }))
}

/// CORS for `origin` alone (none without `--cors-origin`).
pub fn cors(origin: &str) -> Result<CorsLayer, String> {
    let value =
        HeaderValue::from_str(origin).map_err(|e| format!("--cors-origin {origin}: {e}"))?;
    Ok(CorsLayer::new()
        // A list, so that other origins get no CORS header at all.
        .allow_origin(AllowOrigin::list([value]))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_required_off_loopback_and_compared_exactly() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(Access::new(public, None).unwrap_err().contains("--token"));
        assert!(
            Access::new(local, Some("short"))
                .unwrap_err()
                .contains("16")
        );
        let access = Access::new(public, Some("0123456789abcdef0123")).unwrap();
        assert!(access.hosts.is_none());
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(access.authorized(Some(&header("Bearer 0123456789abcdef0123"))));
        for bad in [
            "Bearer 0123456789abcdef012",
            "Bearer 0123456789abcdef01234",
            "Basic 0123456789abcdef0123",
            "",
        ] {
            assert!(!access.authorized(Some(&header(bad))), "{bad}");
        }
        assert!(!access.authorized(None));
        let open = Access::new(local, None).unwrap();
        assert!(open.authorized(None));
        assert_eq!(
            open.hosts.unwrap(),
            ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"]
        );
    }
}
