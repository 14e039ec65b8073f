//! Access control at the HTTP edge, before any handler: with `API_TOKEN` set, every mutating REST
//! endpoint and all of `/mcp` require `Authorization: Bearer <token>` (CONTRACT, "Additions of
//! ours"); with `API_TOKEN_FOR_READS` the REST reads do too, all but the probes' `/`, `/health`
//! and `/api/v1/`. Without a token the layer is not installed at all, so an open service pays
//! nothing for it.
//!
//! The token is compared in constant time and never logged: it lives in a [`Secret`], whose
//! `Debug` is redacted, and no message here prints a header.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::settings::Secret;

/// The MCP endpoint's path; everything at or under it is the MCP door.
pub const MCP_PATH: &str = "/mcp";

/// Paths that stay open to GET even with `API_TOKEN_FOR_READS`: the probes and the greetings.
const PROBE_PATHS: [&str; 4] = ["/", "/health", "/api/v1/", "/api/v1"];

/// The realm named in `WWW-Authenticate` (RFC 6750 section 3).
const REALM: &str = "aioops-mcp-iforest";

/// The JSON-RPC error code of an unauthenticated MCP request: in the range JSON-RPC leaves to
/// servers (-32000 to -32099); MCP itself defines none for HTTP-level refusals.
const MCP_UNAUTHORIZED_CODE: i64 = -32001;

/// What a request must show, and which requests must show it.
#[derive(Debug, Clone)]
pub struct AccessControl {
    token: Secret,
    /// The REST reads need the token too.
    reads: bool,
}

/// Which door a request knocks on, for what it must show and how a refusal is spelt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// Needs no token.
    Open,
    /// A REST request that needs the token: a refusal is `{"detail": …}`.
    Rest,
    /// `/mcp`: a refusal is a JSON-RPC error.
    Mcp,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer token that is not the configured one.
    Invalid,
}

impl AccessControl {
    pub fn new(token: Secret, reads: bool) -> Self {
        Self { token, reads }
    }

    fn door(&self, method: &Method, path: &str) -> Door {
        if path == MCP_PATH || path.starts_with("/mcp/") {
            return Door::Mcp;
        }
        let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !read || (self.reads && !PROBE_PATHS.contains(&path)) {
            Door::Rest
        } else {
            Door::Open
        }
    }

    /// `None` when `authorization` carries this token.
    fn check(&self, authorization: Option<&HeaderValue>) -> Option<Refusal> {
        let Some(given) = authorization.and_then(|value| bearer_token(value.as_bytes())) else {
            return Some(Refusal::Missing);
        };
        if constant_time_eq(self.token.expose().as_bytes(), given) {
            None
        } else {
            Some(Refusal::Invalid)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive, RFC
/// 9110 section 11.1); `None` for any other scheme or an empty token.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = header.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = header.get(SCHEME.len()..)?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `given` equals `expected`, in a time that depends on `expected`'s length only: every
/// byte of the token is compared whatever the guess, so the time of an answer never tells how much
/// of a guess was right. A shorter guess compares against zeros and fails on the length.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut same = (expected.len() as u64).ct_eq(&(given.len() as u64));
    for (index, byte) in expected.iter().enumerate() {
        same &= byte.ct_eq(given.get(index).unwrap_or(&0));
    }
    same.into()
}

/// The middleware: passes what may pass, answers the rest 401.
pub async fn require_token(
    State(access): State<Arc<AccessControl>>,
    request: Request,
    next: Next,
) -> Response {
    let door = access.door(request.method(), request.uri().path());
    if door == Door::Open {
        return next.run(request).await;
    }
    match access.check(request.headers().get(header::AUTHORIZATION)) {
        None => next.run(request).await,
        Some(refusal) => {
            tracing::info!(
                method = %request.method(),
                path = request.uri().path(),
                reason = match refusal {
                    Refusal::Missing => "no bearer token",
                    Refusal::Invalid => "wrong bearer token",
                },
                "Request refused: API_TOKEN is set."
            );
            unauthorized(door, refusal)
        }
    }
}

/// A 401 with its `WWW-Authenticate` challenge (RFC 6750 section 3: `error="invalid_token"` only
/// when a token was shown) and a body in the door's own error shape.
fn unauthorized(door: Door, refusal: Refusal) -> Response {
    let challenge = match refusal {
        Refusal::Missing => format!("Bearer realm=\"{REALM}\""),
        Refusal::Invalid => format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", \
             error_description=\"The bearer token is not valid.\""
        ),
    };
    let detail = match refusal {
        Refusal::Missing => {
            "Not authenticated: send the service's API_TOKEN as Authorization: Bearer <token>."
        }
        Refusal::Invalid => "Invalid bearer token.",
    };
    let body = match door {
        Door::Mcp => json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": MCP_UNAUTHORIZED_CODE, "message": format!("Unauthorized: {detail}")},
        }),
        Door::Rest | Door::Open => json!({ "detail": detail }),
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token-0123456789";

    fn access(reads: bool) -> AccessControl {
        AccessControl::new(Secret::new(TOKEN), reads)
    }

    #[test]
    fn only_the_exact_token_passes() {
        let access = access(false);
        let header = |text: &str| HeaderValue::from_str(text).expect("a header value");
        assert_eq!(
            access.check(Some(&header(&format!("Bearer {TOKEN}")))),
            None
        );
        assert_eq!(
            access.check(Some(&header(&format!("bearer  {TOKEN} ")))),
            None
        );
        assert_eq!(access.check(None), Some(Refusal::Missing));
        assert_eq!(
            access.check(Some(&header(&format!("Basic {TOKEN}")))),
            Some(Refusal::Missing)
        );
        assert_eq!(
            access.check(Some(&header("Bearer "))),
            Some(Refusal::Missing)
        );
        for wrong in [
            &TOKEN[..TOKEN.len() - 1],
            &format!("{TOKEN}x"),
            "s3cret-token-0123456780",
            "x",
        ] {
            assert_eq!(
                access.check(Some(&header(&format!("Bearer {wrong}")))),
                Some(Refusal::Invalid),
                "{wrong}"
            );
        }
    }

    #[test]
    fn comparison_is_exact_at_every_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn writes_and_mcp_need_the_token_reads_only_when_asked() {
        let open_reads = access(false);
        assert_eq!(
            open_reads.door(&Method::GET, "/api/v1/anomalies"),
            Door::Open
        );
        assert_eq!(open_reads.door(&Method::POST, "/api/v1/train"), Door::Rest);
        assert_eq!(
            open_reads.door(&Method::DELETE, "/api/v1/anomalies"),
            Door::Rest
        );
        assert_eq!(open_reads.door(&Method::GET, "/mcp"), Door::Mcp);
        assert_eq!(open_reads.door(&Method::POST, "/mcp"), Door::Mcp);
        assert_eq!(open_reads.door(&Method::GET, "/mcpx"), Door::Open);

        let closed_reads = access(true);
        assert_eq!(
            closed_reads.door(&Method::GET, "/api/v1/anomalies"),
            Door::Rest
        );
        for probe in PROBE_PATHS {
            assert_eq!(
                closed_reads.door(&Method::GET, probe),
                Door::Open,
                "{probe}"
            );
        }
    }

    #[test]
    fn a_refusal_never_carries_the_token() {
        for door in [Door::Rest, Door::Mcp] {
            for refusal in [Refusal::Missing, Refusal::Invalid] {
                let response = unauthorized(door, refusal);
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                assert!(challenge.starts_with("Bearer realm="), "{challenge}");
                assert!(!format!("{response:?}").contains(TOKEN));
            }
        }
        assert!(!format!("{:?}", access(true)).contains(TOKEN));
    }
}
