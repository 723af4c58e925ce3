//! Console sessions: the API token a person pasted (or a browser login yielded), kept in an
//! http-only, same-site cookie and checked on every page by the same engine call an API
//! request makes, so revoking the token ends the session at once. State-changing forms
//! carry a CSRF token derived from the session; the access layer refuses a POST without it.

use axum::http::HeaderMap;
use axum::http::header;
use subtle::ConstantTimeEq;

use crate::engine::crypto;

pub const COOKIE: &str = "pbackend_session";
/// Twelve hours: a working day, after which the token is pasted again.
const MAX_AGE_SECS: u64 = 12 * 3600;

/// The session token in the request's cookies, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == COOKIE
                && plausible(v)
            {
                return Some(v.to_owned());
            }
        }
    }
    None
}

/// Tokens are `pul-…` hex or JWTs: nothing that needs quoting in a cookie.
pub fn plausible(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 8192
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Starts a session with `token` and sends the browser to `next`.
pub fn start(token: &str, next: &str, secure: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = axum::response::Redirect::to(next).into_response();
    if let Ok(v) = set_cookie(token, secure).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Starts a session at the end of a sign-in at the identity provider. The browser arrives
/// here by a redirect from another site, and a `SameSite=Strict` cookie is not sent on a
/// redirect that site started: so this answers a page of our own that moves on to `next`,
/// a navigation from this site, on which the cookie is sent.
pub fn start_after_provider(token: &str, next: &str, secure: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Signed in · pbackend" } }
            body { p { "Signed in. " a href=(next) { "Continue" } } }
        }
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page.into_string(),
    )
        .into_response();
    if let Ok(v) = format!("0; url={next}").parse() {
        resp.headers_mut().insert(header::REFRESH, v);
    }
    if let Ok(v) = set_cookie(token, secure).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The CSRF token of a session: a hash of the session's token, so it needs no storage and
/// only someone holding the session can compute it.
pub fn csrf_of(token: &str) -> String {
    let h = crypto::sha256(format!("pbackend-console-csrf\0{token}").as_bytes());
    hex::encode(&h[..16])
}

pub fn csrf_ok(token: &str, presented: &str) -> bool {
    bool::from(csrf_of(token).as_bytes().ct_eq(presented.as_bytes()))
}

/// A same-origin check beside the CSRF token: a browser names the page a form came from in
/// `Origin`; when present it must be this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        == Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_the_session_among_other_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; pbackend_session=pul-abc123; c=d"),
        );
        assert_eq!(token(&h).as_deref(), Some("pul-abc123"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("pbackend_session=bad\"value"),
        );
        assert_eq!(token(&h), None);
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let t = csrf_of("pul-one");
        assert!(csrf_ok("pul-one", &t));
        assert!(!csrf_ok("pul-two", &t));
        assert!(!csrf_ok("pul-one", ""));
    }

    #[test]
    fn origin_must_match_host_when_sent() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
    }
}
