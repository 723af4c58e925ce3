//! An update's page (the permalink `pulumi up` prints: `…/updates/{version}`; a preview's:
//! `…/previews/{id}`): what it was, and its engine events as a log, refreshed while it runs.
//! And what changed between two versions of a stack.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::UpdateView;
use crate::engine::state::browse::{Change, MASKED};
use crate::server::console::layout::{self, duration, opt_when, page};
use crate::server::console::stacks::{changes_text, crumbs, stack_href};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{P, Q};
use crate::server::state::AppState;
use crate::types::StackKey;

/// An update's log shows at most this many event pages (4 MB each).
const MAX_EVENT_PAGES: usize = 8;

#[derive(Deserialize)]
pub struct VersionPath {
    org: String,
    project: String,
    stack: String,
    version: String,
}

#[derive(Deserialize)]
pub struct PreviewPath {
    org: String,
    project: String,
    stack: String,
    update: String,
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
    /// The page of changes, from 1.
    page: Option<String>,
}

/// Changed resources one page shows (a page of a large diff stays quick to lay out).
const CHANGES_PAGE: usize = 500;

fn key(org: String, project: String, stack: String) -> StackKey {
    StackKey {
        org,
        project,
        stack,
    }
}

/// The CLI's colour tags (`<{%fg 2%}>`, `<{%reset%}>`) and ANSI escapes, removed.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<{%") {
        out.push_str(&rest[..i]);
        match rest[i..].find("%}>") {
            Some(j) => rest = &rest[i + j + 3..],
            None => {
                rest = &rest[i..];
                break;
            }
        }
    }
    out.push_str(rest);
    let mut clean = String::with_capacity(out.len());
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        clean.push(c);
    }
    clean
}

fn name_of(urn: &str) -> &str {
    urn.rsplit("::").next().unwrap_or(urn)
}

/// One engine event as a log line (`None`: nothing a reader needs).
pub fn event_line(ev: &Value) -> Option<(&'static str, String)> {
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    if let Some(e) = ev.get("stdoutEvent") {
        let m = plain(&str_at(e, "message"));
        return (!m.trim().is_empty()).then(|| ("", m.trim_end().to_owned()));
    }
    if let Some(e) = ev.get("diagnosticEvent") {
        let sev = str_at(e, "severity");
        let m = plain(&str_at(e, "message"));
        let urn = str_at(e, "urn");
        let who = if urn.is_empty() {
            String::new()
        } else {
            format!("{}: ", name_of(&urn))
        };
        let class = if sev == "error" { "bad" } else { "" };
        return Some((class, format!("{sev}: {who}{}", m.trim_end())));
    }
    if let Some(e) = ev.get("resourcePreEvent") {
        let md = e.get("metadata")?;
        let op = str_at(md, "op");
        if op == "same" {
            return None;
        }
        return Some((
            "",
            format!(
                "{op} {} {} …",
                str_at(md, "type"),
                name_of(&str_at(md, "urn"))
            ),
        ));
    }
    if let Some(e) = ev.get("resOutputsEvent") {
        let md = e.get("metadata")?;
        let op = str_at(md, "op");
        if op == "same" {
            return None;
        }
        return Some((
            "ok",
            format!(
                "{op} {} {} done",
                str_at(md, "type"),
                name_of(&str_at(md, "urn"))
            ),
        ));
    }
    if let Some(e) = ev.get("resOpFailedEvent") {
        let md = e.get("metadata")?;
        return Some((
            "bad",
            format!("failed: {} {}", str_at(md, "op"), str_at(md, "urn")),
        ));
    }
    if let Some(e) = ev.get("summaryEvent") {
        let changes = e
            .get("resourceChanges")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let secs = e
            .get("durationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return Some(("ok", format!("summary: {changes}; took {}", duration(secs))));
    }
    if ev.get("cancelEvent").is_some() {
        return Some(("bad", "cancelled".into()));
    }
    None
}

async fn event_log(
    state: &AppState,
    viewer: &Viewer,
    key: &StackKey,
    u: &UpdateView,
) -> Result<Markup, Response> {
    let mut lines = Vec::new();
    let mut continuation: Option<String> = None;
    for _ in 0..MAX_EVENT_PAGES {
        let page = state
            .engine
            .get_events(&viewer.identity, key, &u.id, continuation.as_deref())
            .await
            .map_err(|e| failed(e, Some(viewer)))?;
        let empty = page.events.is_empty();
        for raw in &page.events {
            if let Ok(v) = serde_json::from_str::<Value>(raw.get())
                && let Some(line) = event_line(&v)
            {
                lines.push(line);
            }
        }
        match page.continuation {
            Some(c) if !empty => continuation = Some(c),
            _ => break,
        }
    }
    Ok(html! {
        div.log.card #log {
            @if lines.is_empty() { span.muted { "No events." } }
            @for (class, text) in &lines { div class=(class) { (text) } }
        }
    })
}

async fn update_page(state: AppState, viewer: Viewer, key: StackKey, u: UpdateView) -> Response {
    let log = match event_log(&state, &viewer, &key, &u).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let base = stack_href(&key);
    let running = u.status.as_str() == "running" || u.status.as_str() == "not-started";
    let title = if u.dry_run {
        format!("Preview {}", u.id)
    } else {
        format!("Update {} ({})", u.version, u.kind)
    };
    let body = html! {
        div.card {
            table {
                tbody {
                    tr { th { "Kind" } td { (u.kind) @if u.dry_run { " (preview)" } } }
                    tr { th { "Result" } td #result { (u.status.as_str()) } }
                    tr { th { "By" } td { (u.author) } }
                    @if !u.message.is_empty() { tr { th { "Message" } td { (u.message) } } }
                    tr { th { "Started" } td { (opt_when(u.started_at.or(Some(u.created_at)))) } }
                    tr { th { "Ended" } td { (opt_when(u.ended_at)) } }
                    @if let (Some(s), Some(e)) = (u.started_at, u.ended_at) { tr { th { "Took" } td { (duration(e - s)) } } }
                    tr { th { "Changes" } td { (changes_text(&u)) } }
                    tr { th { "Update id" } td.mono { (u.id) } }
                }
            }
            @if !u.dry_run && u.version > 1 {
                p { a href=(format!("{base}/changes?from={}&to={}", u.version - 1, u.version)) { "What changed in this update" } }
            }
        }
        h2 { "Log" }
        (log)
    };
    let mut resp = layout::ok(page(&title, Some(&viewer), &crumbs(&key), body));
    if running {
        // Reloads itself while the update runs: its log grows without any script.
        resp.headers_mut()
            .insert("refresh", axum::http::HeaderValue::from_static("3"));
    }
    resp
}

/// `GET /{org}/{project}/{stack}/updates/{version}`.
pub async fn update(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<VersionPath>,
) -> Response {
    let key = key(p.org, p.project, p.stack);
    let Ok(version) = p.version.parse::<i64>() else {
        return layout::error_page(StatusCode::NOT_FOUND, "No such version.", Some(&viewer));
    };
    match state
        .engine
        .update_by_version(&viewer.identity, &key, version)
        .await
    {
        Ok(u) => update_page(state, viewer, key, u).await,
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `GET /{org}/{project}/{stack}/previews/{update}`.
pub async fn preview(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<PreviewPath>,
) -> Response {
    let key = key(p.org, p.project, p.stack);
    match state
        .engine
        .update_by_id(&viewer.identity, &key, &p.update)
        .await
    {
        Ok(u) => update_page(state, viewer, key, u).await,
        Err(e) => failed(e, Some(&viewer)),
    }
}

fn value_text(v: &Option<Value>) -> String {
    match v {
        None => "—".into(),
        Some(Value::String(s)) if s == MASKED => MASKED.into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// `GET /{org}/{project}/{stack}/changes?from=A&to=B`.
pub async fn changes(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<crate::server::handlers::StackPath>,
    Q(q): Q<ChangesQuery>,
) -> Response {
    let key = p.key();
    let parse = |s: &Option<String>| s.as_deref().and_then(|v| v.trim().parse::<i64>().ok());
    let (Some(from), Some(to)) = (parse(&q.from), parse(&q.to)) else {
        return layout::error_page(
            StatusCode::BAD_REQUEST,
            "Name two versions: ?from=A&to=B.",
            Some(&viewer),
        );
    };
    let list = match state
        .engine
        .version_changes(&viewer.identity, &key, from, to)
        .await
    {
        Ok(c) => c,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let pages = list.len().div_ceil(CHANGES_PAGE).max(1);
    let page_no = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let first = (page_no - 1) * CHANGES_PAGE;
    let slice = &list[first.min(list.len())..(first + CHANGES_PAGE).min(list.len())];
    let link = |n: usize| format!("{}/changes?from={from}&to={to}&page={n}", stack_href(&key));
    let title = format!("What changed from version {from} to {to}");
    let body = html! {
        form method="get" {
            label { "From " input type="number" name="from" value=(from) min="1"; }
            " " label { "to " input type="number" name="to" value=(to) min="1"; }
            " " input type="submit" value="Compare";
        }
        @if list.is_empty() { p.muted { "No resource changed." } }
        @else {
            p.muted { (list.len()) " resources changed" @if pages > 1 { "; " (first + 1) "–" (first + slice.len()) " shown" } }
            table #changes {
                thead { tr { th { "Resource" } th { "Change" } } }
                tbody {
                    @for c in slice {
                        tr {
                            td { strong { (name_of(&c.urn)) } br; span.muted.mono { (c.ty) } }
                            td {
                                @match &c.change {
                                    Change::Added => { ins { "added" } }
                                    Change::Removed => { del { "removed" } }
                                    Change::Changed(props) => {
                                        table {
                                            @for pc in props {
                                                tr {
                                                    td.mono { (pc.path) }
                                                    td.mono { del { (value_text(&pc.old)) } }
                                                    td.mono { ins { (value_text(&pc.new)) } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav aria-label="Pages of changes" {
                    @if page_no > 1 { a href=(link(page_no - 1)) { "← Previous" } " " }
                    "Page " (page_no) " of " (pages)
                    @if page_no < pages { " " a href=(link(page_no + 1)) { "Next →" } }
                }
            }
        }
    };
    layout::ok(page(&title, Some(&viewer), &crumbs(&key), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_tags_and_escapes_are_removed() {
        assert_eq!(plain("<{%fg 2%}>+ created<{%reset%}>"), "+ created");
        assert_eq!(plain("\u{1b}[32mok\u{1b}[0m"), "ok");
    }

    #[test]
    fn events_read_as_lines() {
        let ev = serde_json::json!({"resOutputsEvent": {"metadata": {"op": "create", "type": "t:m:R", "urn": "urn:a::b::t:m:R::r1"}}});
        assert_eq!(event_line(&ev), Some(("ok", "create t:m:R r1 done".into())));
        let same =
            serde_json::json!({"resourcePreEvent": {"metadata": {"op": "same", "urn": "u"}}});
        assert_eq!(event_line(&same), None);
    }
}
