//! The HTTP transport's guard, in front of the MCP service: the bearer token (401), the
//! `Origin` (403, browsers) and the `Host` (403, DNS rebinding) of every request.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// What a request must show.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token, or the wrong one.
    Unauthorized,
    /// An `Origin` that is not allowed.
    Origin,
    /// A `Host` that is not allowed.
    Host,
}

impl Guard {
    /// The guard of a server bound to `host:port`; `extra_hosts` and `extra_origins` are
    /// allowed besides the loopback names of that port (and the bound address).
    pub fn new(
        token: String,
        host: &str,
        port: u16,
        extra_hosts: &[String],
        extra_origins: &[String],
    ) -> Guard {
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let bound = authority(host, port);
        if !hosts.contains(&bound) {
            hosts.push(bound);
        }
        hosts.extend(extra_hosts.iter().map(|h| h.trim().to_ascii_lowercase()));
        let mut origins = vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ];
        origins.extend(
            extra_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()),
        );
        hosts.retain(|h| !h.is_empty());
        origins.retain(|o| !o.is_empty());
        Guard {
            token,
            hosts,
            origins,
        }
    }

    /// Checks a request's headers: the token first, then `Origin`, then `Host`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let good = presented.is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.token.as_bytes())));
        if !good {
            return Err(Refusal::Unauthorized);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| Refusal::Origin)?;
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if !self.origins.contains(&origin) {
                return Err(Refusal::Origin);
            }
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| h.trim().to_ascii_lowercase())
            .ok_or(Refusal::Host)?;
        if !self.host_allowed(&host) {
            return Err(Refusal::Host);
        }
        Ok(())
    }

    /// An allowed entry without a port allows its host on any port.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_part(host);
        self.hosts
            .iter()
            .any(|allowed| allowed == host || (!has_port(allowed) && allowed == name))
    }
}

/// The host of a `host[:port]` authority (IPv6 in brackets).
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn has_port(authority: &str) -> bool {
    host_part(authority).len() != authority.len()
}

/// `host:port`, with an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{}:{port}", host.to_ascii_lowercase()),
    }
}

/// True for an address that only this machine reaches.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Largest JSON-RPC body taken.
const MAX_BODY: usize = 4 << 20;

/// Why a POST body is not a JSON-RPC message, as JSON-RPC says it: -32700 for text that is not
/// JSON, -32600 for JSON that is not a request, notification or response (one or a batch).
pub fn jsonrpc_problem(body: &[u8]) -> Option<(i32, String)> {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some((-32700, format!("Parse error: {e}"))),
    };
    let message = |m: &serde_json::Value| {
        m.get("jsonrpc").and_then(serde_json::Value::as_str) == Some("2.0")
            && (m.get("method").is_some_and(serde_json::Value::is_string)
                || m.get("result").is_some()
                || m.get("error").is_some())
    };
    let ok = match &value {
        serde_json::Value::Array(batch) => !batch.is_empty() && batch.iter().all(message),
        other => message(other),
    };
    (!ok).then(|| {
        (
            -32600,
            "Invalid Request: not a JSON-RPC 2.0 message".to_string(),
        )
    })
}

/// A JSON-RPC error answer with no id, for a body that could not be read as a message.
fn jsonrpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Checks that a POST body is a JSON-RPC message before the MCP service reads it: malformed
/// input gets JSON-RPC's own error, and the server goes on serving.
async fn checked_body(req: Request) -> Result<Request, Response> {
    if req.method() != axum::http::Method::POST {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Err(jsonrpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            "Invalid Request: the body is larger than 4 MiB or was cut short",
        ));
    };
    if let Some((code, message)) = jsonrpc_problem(&bytes) {
        return Err(jsonrpc_error(StatusCode::BAD_REQUEST, code, &message));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// The axum middleware: refuses before the MCP service sees the request.
pub async fn layer(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match guard.check(req.headers()) {
        Ok(()) => match checked_body(req).await {
            Ok(req) => next.run(req).await,
            Err(refused) => refused,
        },
        Err(Refusal::Unauthorized) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required: Authorization: Bearer <the output of `bm2 mcp token`>\n",
        )
            .into_response(),
        Err(Refusal::Origin) => (
            StatusCode::FORBIDDEN,
            "this Origin is not allowed (--allowed-origins)\n",
        )
            .into_response(),
        Err(Refusal::Host) => (
            StatusCode::FORBIDDEN,
            "this Host is not allowed (--allowed-hosts)\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_not_json_rpc_get_its_errors() {
        assert_eq!(
            jsonrpc_problem(br#"{"jsonrpc":"2.0","id":1,"method":"#).map(|p| p.0),
            Some(-32700)
        );
        assert_eq!(
            jsonrpc_problem(br#"{"hello":"world"}"#).map(|p| p.0),
            Some(-32600)
        );
        assert_eq!(jsonrpc_problem(b"[]").map(|p| p.0), Some(-32600));
        assert_eq!(
            jsonrpc_problem(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            None
        );
        assert_eq!(
            jsonrpc_problem(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
        assert_eq!(
            jsonrpc_problem(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            None
        );
        assert_eq!(
            jsonrpc_problem(
                br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#
            ),
            None
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn guard() -> Guard {
        Guard::new("s3cret".into(), "127.0.0.1", 8849, &[], &[])
    }

    #[test]
    fn the_token_is_required() {
        let g = guard();
        assert_eq!(
            g.check(&headers(&[("host", "127.0.0.1:8849")])),
            Err(Refusal::Unauthorized)
        );
        let wrong = headers(&[("host", "127.0.0.1:8849"), ("authorization", "Bearer nope")]);
        assert_eq!(g.check(&wrong), Err(Refusal::Unauthorized));
        let basic = headers(&[
            ("host", "127.0.0.1:8849"),
            ("authorization", "Basic s3cret"),
        ]);
        assert_eq!(g.check(&basic), Err(Refusal::Unauthorized));
        let good = headers(&[
            ("host", "127.0.0.1:8849"),
            ("authorization", "Bearer s3cret"),
        ]);
        assert_eq!(g.check(&good), Ok(()));
        let lower = headers(&[
            ("host", "localhost:8849"),
            ("authorization", "bearer s3cret"),
        ]);
        assert_eq!(g.check(&lower), Ok(()));
    }

    #[test]
    fn foreign_origins_are_refused_and_local_ones_pass() {
        let g = guard();
        let with = |origin: &str| {
            g.check(&headers(&[
                ("host", "127.0.0.1:8849"),
                ("authorization", "Bearer s3cret"),
                ("origin", origin),
            ]))
        };
        assert_eq!(with("http://evil.example"), Err(Refusal::Origin));
        assert_eq!(with("http://localhost:9999"), Err(Refusal::Origin));
        assert_eq!(with("null"), Err(Refusal::Origin));
        assert_eq!(with("http://localhost:8849"), Ok(()));
        assert_eq!(with("http://[::1]:8849"), Ok(()));
        let g = Guard::new(
            "s3cret".into(),
            "127.0.0.1",
            8849,
            &[],
            &["https://app.example/".into()],
        );
        let h = headers(&[
            ("host", "127.0.0.1:8849"),
            ("authorization", "Bearer s3cret"),
            ("origin", "https://app.example"),
        ]);
        assert_eq!(g.check(&h), Ok(()));
    }

    #[test]
    fn rebinding_hosts_are_refused() {
        let g = guard();
        let with = |host: &str| {
            g.check(&headers(&[
                ("host", host),
                ("authorization", "Bearer s3cret"),
            ]))
        };
        assert_eq!(with("evil.example:8849"), Err(Refusal::Host));
        assert_eq!(with("127.0.0.1:1234"), Err(Refusal::Host));
        assert_eq!(with("[::1]:8849"), Ok(()));
        assert_eq!(
            g.check(&headers(&[("authorization", "Bearer s3cret")])),
            Err(Refusal::Host)
        );
        let g = Guard::new("s3cret".into(), "0.0.0.0", 80, &["mcp.example".into()], &[]);
        let with = |host: &str| {
            g.check(&headers(&[
                ("host", host),
                ("authorization", "Bearer s3cret"),
            ]))
        };
        assert_eq!(with("0.0.0.0:80"), Ok(()));
        assert_eq!(with("mcp.example"), Ok(()));
        assert_eq!(with("MCP.example:443"), Ok(()));
        assert_eq!(with("other.example"), Err(Refusal::Host));
    }

    #[test]
    fn loopback_addresses_are_told_apart() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0"));
        assert!(!is_loopback("192.168.1.2"));
        assert_eq!(authority("::1", 80), "[::1]:80");
    }
}
