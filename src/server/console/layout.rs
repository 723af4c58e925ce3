//! The page shell every console page shares, and the small formatting helpers its pages use.
//! Pages are HTML rendered on the server (maud: templates checked at compile time, escaping
//! by default); there is no script, so every page reads and every form works without one.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::server::console::Viewer;

/// Small and fixed: compiled into the binary, sent inline (one request per page).
const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5b6478;--line:#d9dde5;--bg:#f7f8fa;--accent:#4d3bd6;--bad:#b42318;--ok:#067647}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.5em;background:#151a26;color:#fff}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700}header .who{margin-left:auto;color:#c9cedb}
header form{display:inline}header button{background:none;border:1px solid #6b7385;color:#fff;border-radius:4px;padding:.2em .7em;cursor:pointer}
main{max-width:1200px;margin:0 auto;padding:1.2em 1.5em 3em}
nav.crumbs{color:var(--muted);margin-bottom:.4em}nav.crumbs a{color:var(--muted)}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.15em;margin:1.6em 0 .5em}
a{color:var(--accent)}a:focus,button:focus,input:focus,summary:focus{outline:3px solid #9e92ff;outline-offset:1px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{text-align:left;padding:.45em .7em;border-bottom:1px solid var(--line);vertical-align:top}th{background:#eef0f4;font-weight:600}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.88em}
pre{background:#fff;border:1px solid var(--line);padding:.7em;overflow:auto;max-height:32em}
.muted{color:var(--muted)}.bad{color:var(--bad)}.ok{color:var(--ok)}
.pill{display:inline-block;border:1px solid var(--line);border-radius:999px;padding:0 .6em;margin:0 .3em .2em 0;background:#fff;font-size:.85em}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:1em 1.2em;margin:1em 0}
.actions form{display:inline-block;margin:0 1em .5em 0}
button.danger{background:var(--bad);color:#fff;border:0;border-radius:4px;padding:.35em .9em;cursor:pointer}
button.primary,input[type=submit]{background:var(--accent);color:#fff;border:0;border-radius:4px;padding:.35em .9em;cursor:pointer}
input[type=text],input[type=password],input[type=search],input[type=number]{padding:.35em .5em;border:1px solid var(--line);border-radius:4px;font:inherit}
details.res{margin:.15em 0 .15em 1.2em}details.res>summary{cursor:pointer}details.res .props{margin:.3em 0 .6em 1.2em}
.log div{white-space:pre-wrap;font-family:ui-monospace,Menlo,monospace;font-size:.85em;padding:.05em 0}
del{background:#fee4e2;text-decoration:none}ins{background:#dcfae6;text-decoration:none}
"#;

/// A whole page: header with the viewer and a logout button, breadcrumbs, the body.
pub fn page(
    title: &str,
    viewer: Option<&Viewer>,
    crumbs: &[(String, String)],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pbackend" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "pbackend" }
                    @if let Some(v) = viewer {
                        a href="/" { "Stacks" }
                        a href="/user/settings/tokens" { "Tokens" }
                        span.who { "Signed in as " strong { (v.identity.user) } }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if !crumbs.is_empty() {
                        nav.crumbs aria-label="Breadcrumbs" {
                            @for (i, (label, href)) in crumbs.iter().enumerate() {
                                @if i > 0 { " / " }
                                a href=(href) { (label) }
                            }
                        }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A rendered page as a response.
pub fn ok(markup: Markup) -> Response {
    html_response(StatusCode::OK, markup)
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Pages never need to be framed; this refuses clickjacking outright.
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// An error as a page (the API's errors are JSON; a browser gets HTML).
pub fn error_page(status: StatusCode, message: &str, viewer: Option<&Viewer>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        page(
            title,
            viewer,
            &[],
            html! { p.bad role="alert" { (message) } p { a href="/" { "Back to the stacks" } } },
        ),
    )
}

/// A Unix time as UTC text.
pub fn when(secs: i64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| secs.to_string())
}

pub fn opt_when(secs: Option<i64>) -> String {
    secs.map(when).unwrap_or_else(|| "—".into())
}

/// Seconds as `1h 2m`, `3m 4s`, `5s`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// A path segment, percent-encoded where a stack or project name could need it.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(3725), "1h 2m");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn text_is_escaped() {
        let m = page("<t>", None, &[], html! { p { ("<script>") } }).into_string();
        assert!(
            m.contains("&lt;script&gt;") && !m.contains("<script>"),
            "{m}"
        );
    }
}
