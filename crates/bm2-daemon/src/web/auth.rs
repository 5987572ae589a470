//! Who may use the dashboard. Reading and acting need the token, sent as
//! `Authorization: Bearer <token>` or as the session cookie that opening the tokened URL sets.
//! A browser's state-changing request (cookie) and every WebSocket must come from the
//! dashboard's own origin, so that no other web page can act through a logged-in browser.

use bm2_types::ErrorCode;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bm2_types::ApiError;
use subtle::ConstantTimeEq;

use crate::api::Failure;

/// The token and the rules of one running dashboard.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Arc<str>,
    public_read: bool,
    cookie: Arc<str>,
    loopback: bool,
}

/// How a request proved it has the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    Header,
    Cookie,
}

impl Guard {
    /// Rules for a dashboard with `token` on `port` (the cookie name carries the port, so that
    /// dashboards of several daemons on one host do not overwrite each other's sessions),
    /// listening on a `loopback` address or not.
    pub fn new(token: String, public_read: bool, port: u16, loopback: bool) -> Guard {
        Guard {
            token: token.into(),
            public_read,
            cookie: format!("bm2_session_{port}").into(),
            loopback,
        }
    }

    /// True when `candidate` is the token (compared in constant time).
    pub fn is_token(&self, candidate: &str) -> bool {
        bool::from(candidate.as_bytes().ct_eq(self.token.as_bytes()))
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub fn session_cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie, self.token
        )
    }

    fn proof(&self, headers: &HeaderMap) -> Option<Proof> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.is_token(t.trim())) {
            return Some(Proof::Header);
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == &*self.cookie)
            .map(|(_, value)| value);
        cookie
            .is_some_and(|t| self.is_token(t))
            .then_some(Proof::Cookie)
    }
}

/// Read-only routes: the token, unless the dashboard was started with `--public-read`.
pub async fn read(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if guard.public_read || guard.proof(req.headers()).is_some() {
        return next.run(req).await;
    }
    unauthorized()
}

/// Read-only routes whose answers may hold secrets (environments, log lines): the token always.
pub async fn private(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if guard.proof(req.headers()).is_some() {
        return next.run(req).await;
    }
    unauthorized()
}

/// A dashboard on a loopback address answers only requests addressed to a loopback name, so
/// that a web page whose name is made to resolve to 127.0.0.1 (DNS rebinding) cannot read it.
pub async fn host(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if !guard.loopback
        || req
            .headers()
            .get(header::HOST)
            .is_none_or(|h| loopback_host(h.to_str().unwrap_or("")))
    {
        return next.run(req).await;
    }
    Failure(ApiError::new(
        ErrorCode::Forbidden,
        "this dashboard listens on a loopback address: address it as 127.0.0.1, [::1] or localhost",
    ))
    .into_response()
}

/// True for `127.x.x.x`, `[::1]` or `localhost`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Routes that act, and the WebSocket: the token, and the dashboard's own origin for browsers.
pub async fn write(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let Some(proof) = guard.proof(req.headers()) else {
        return unauthorized();
    };
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let origin = origin_matches(req.headers());
    // A browser always sends Origin with a POST or a WebSocket; a tool with the token in a
    // header may send none.
    let allowed = match (proof, origin) {
        (_, Some(false)) | (Proof::Cookie, None) => false,
        (Proof::Header, None) | (_, Some(true)) => true,
    };
    if !allowed {
        let what = if websocket { "WebSocket" } else { "request" };
        return Failure(ApiError::new(
            ErrorCode::Forbidden,
            format!("this {what} comes from another origin than the dashboard's: refused"),
        ))
        .into_response();
    }
    next.run(req).await
}

/// Whether the `Origin` header names the host the request was sent to (`None`: no Origin).
fn origin_matches(headers: &HeaderMap) -> Option<bool> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    Some(match (origin, host) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
        _ => false,
    })
}

fn unauthorized() -> Response {
    Failure(
        ApiError::new(
            ErrorCode::Unauthorized,
            "the dashboard's access token is missing or wrong",
        )
        .with_hint(
            "open the URL printed by `bm2 dashboard`, or send `Authorization: Bearer <token>` \
                 (the token is in $BM2_HOME/dashboard.token)",
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_comes_in_a_header_or_the_session_cookie() {
        let g = Guard::new("abc123".into(), false, 9615, true);
        assert_eq!(
            g.proof(&headers(&[("authorization", "Bearer abc123")])),
            Some(Proof::Header)
        );
        assert_eq!(
            g.proof(&headers(&[("authorization", "Bearer abc124")])),
            None
        );
        assert_eq!(
            g.proof(&headers(&[("cookie", "x=1; bm2_session_9615=abc123")])),
            Some(Proof::Cookie)
        );
        assert_eq!(
            g.proof(&headers(&[("cookie", "bm2_session_9616=abc123")])),
            None
        );
        assert_eq!(g.proof(&headers(&[])), None);
    }

    #[test]
    fn loopback_names_are_recognised() {
        for ok in [
            "127.0.0.1:9615",
            "127.0.0.1",
            "localhost:1",
            "LOCALHOST",
            "[::1]:9615",
            "[::1]",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:9615", "10.0.0.1:9615", "", "[::2]:1"] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn origin_must_be_the_dashboard_itself() {
        let h = |o: &str| headers(&[("host", "127.0.0.1:9615"), ("origin", o)]);
        assert_eq!(origin_matches(&h("http://127.0.0.1:9615")), Some(true));
        assert_eq!(origin_matches(&h("http://evil.example")), Some(false));
        assert_eq!(origin_matches(&h("http://127.0.0.1:9616")), Some(false));
        assert_eq!(origin_matches(&headers(&[("host", "x")])), None);
    }
}
