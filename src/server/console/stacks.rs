//! Stack lists and a stack's page: its resources as a tree by parent, its outputs, tags,
//! history, and the actions the viewer may take.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use crate::engine::state::browse::{ResourceView, StateView};
use crate::engine::{Permission, StackListQuery, StackView, Target, UpdateView};
use crate::server::console::layout::{self, duration, opt_when, page, seg, when};
use crate::server::console::org::org_base;
use crate::server::console::{Viewer, failed};
use crate::server::extract::{P, Q};
use crate::server::handlers::StackPath;
use crate::server::state::AppState;
use crate::types::{StackKey, StackPermission};

/// Resources whose inputs and outputs a stack page shows inline; beyond, each has its own
/// page, so a page of a large stack stays small.
const INLINE_PROPERTIES: usize = 100;
/// Updates a stack page lists.
const HISTORY_ROWS: i64 = 50;

#[derive(Deserialize)]
pub struct OrgPath {
    org: String,
}

#[derive(Deserialize, Default)]
pub struct StackQuery {
    #[serde(default, rename = "show-secrets")]
    show_secrets: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    q: Option<String>,
}

pub fn stack_href(k: &StackKey) -> String {
    format!("/{}/{}/{}", seg(&k.org), seg(&k.project), seg(&k.stack))
}

pub fn crumbs(k: &StackKey) -> Vec<(String, String)> {
    vec![
        ("Stacks".into(), "/".into()),
        (k.org.clone(), format!("/{}", seg(&k.org))),
        (format!("{}/{}", k.project, k.stack), stack_href(k)),
    ]
}

fn stack_table(stacks: &[StackView], filter: &str) -> Markup {
    let f = filter.to_lowercase();
    let shown: Vec<&StackView> = stacks
        .iter()
        .filter(|s| {
            f.is_empty()
                || s.key.to_string().to_lowercase().contains(&f)
                || s.tags
                    .iter()
                    .any(|(k, v)| k.to_lowercase().contains(&f) || v.to_lowercase().contains(&f))
        })
        .collect();
    html! {
        form role="search" method="get" {
            input type="search" name="q" value=(filter) placeholder="Filter by name or tag" aria-label="Filter stacks";
            " " input type="submit" value="Filter";
        }
        p.muted { (shown.len()) " of " (stacks.len()) " stacks" }
        table {
            thead { tr { th { "Stack" } th { "Resources" } th { "Last update" } th { "Tags" } } }
            tbody {
                @for s in &shown {
                    tr {
                        td { a href=(stack_href(&s.key)) { (s.key.org) "/" (s.key.project) "/" (s.key.stack) } }
                        td { (s.resource_count) }
                        td { (opt_when(s.last_update_at)) }
                        td { @for (k, v) in &s.tags { @if !k.starts_with("pulumi:") { span.pill { (k) "=" (v) } } } }
                    }
                }
            }
        }
    }
}

async fn list(
    state: &AppState,
    viewer: &Viewer,
    org: Option<String>,
) -> Result<Vec<StackView>, Response> {
    state
        .engine
        .list_all_stacks(
            &viewer.identity,
            StackListQuery {
                org,
                project: None,
                tag_name: None,
                tag_value: None,
                continuation: None,
            },
        )
        .await
        .map(|l| l.stacks)
        .map_err(|e| failed(e, Some(viewer)))
}

/// `GET /`: every stack the viewer can see.
pub async fn home(State(state): State<AppState>, viewer: Viewer, Q(s): Q<Search>) -> Response {
    let stacks = match list(&state, &viewer, None).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = s.q.unwrap_or_default();
    layout::ok(page(
        "Stacks",
        Some(&viewer),
        &[],
        stack_table(&stacks, &filter),
    ))
}

/// `GET /{org}`: an organization's stacks (also the link `pulumi whoami` and `stack ls` print).
pub async fn org(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<OrgPath>,
    Q(s): Q<Search>,
) -> Response {
    let stacks = match list(&state, &viewer, Some(path.org.clone())).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = s.q.unwrap_or_default();
    let crumbs = vec![("Stacks".to_owned(), "/".to_owned())];
    let target = Target::Org(path.org.clone());
    let mut admin_pages = Vec::new();
    for (scope, label, suffix) in [
        ("audit_log:read", "Audit log", "audit"),
        ("webhook:manage", "Webhooks", "webhooks"),
        ("org_member:read", "Members and teams", "members"),
    ] {
        if state
            .engine
            .authorize(&viewer.identity, Permission::Org(scope), &target)
            .await
            .is_ok()
        {
            admin_pages.push((label, format!("{}/{suffix}", org_base(&path.org))));
        }
    }
    let body = html! {
        @if !admin_pages.is_empty() {
            nav aria-label="Organization" {
                @for (i, (label, href)) in admin_pages.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(href) { (label) }
                }
            }
        }
        (stack_table(&stacks, &filter))
    };
    layout::ok(page(&path.org, Some(&viewer), &crumbs, body))
}

/// Whether the viewer has `need` on the stack (to show or hide an action; the action's own
/// route checks again).
pub async fn may(state: &AppState, viewer: &Viewer, key: &StackKey, need: StackPermission) -> bool {
    state
        .engine
        .authorize(
            &viewer.identity,
            Permission::Stack(need),
            &Target::Stack(key.clone()),
        )
        .await
        .is_ok()
}

fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre { (text) } }
}

fn resource_node(
    r: &ResourceView,
    children: &HashMap<&str, Vec<&ResourceView>>,
    inline: bool,
    depth: usize,
) -> Markup {
    let kids = children
        .get(r.urn.as_str())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    html! {
        details.res open[depth < 2] data-urn=(r.urn) {
            summary {
                strong { (r.name) } " " span.muted.mono { (r.ty) }
                @if let Some(id) = &r.id { " " span.pill.mono { "id " (id) } }
                @if r.protect { " " span.pill { "protected" } }
            }
            @if inline {
                div.props {
                    div.muted.mono { (r.urn) }
                    @if r.inputs.as_object().is_some_and(|o| !o.is_empty()) { div { "Inputs" } (json_block(&r.inputs)) }
                    @if r.outputs.as_object().is_some_and(|o| !o.is_empty()) { div { "Outputs" } (json_block(&r.outputs)) }
                }
            } @else {
                div.props.muted.mono { (r.urn) }
            }
            // Depth is bounded by the state's parent chains; a cycle cannot recurse forever.
            @if depth < 64 {
                @for c in kids { (resource_node(c, children, inline, depth + 1)) }
            }
        }
    }
}

/// Resources as a tree by parent; a resource whose parent is not in the state is a root.
pub fn resource_tree(view: &StateView) -> Markup {
    let urns: std::collections::HashSet<&str> =
        view.resources.iter().map(|r| r.urn.as_str()).collect();
    let mut children: HashMap<&str, Vec<&ResourceView>> = HashMap::new();
    let mut roots = Vec::new();
    for r in &view.resources {
        match r
            .parent
            .as_deref()
            .filter(|p| urns.contains(p) && *p != r.urn)
        {
            Some(p) => children.entry(p).or_default().push(r),
            None => roots.push(r),
        }
    }
    let inline = view.resources.len() <= INLINE_PROPERTIES;
    html! {
        @if view.resources.is_empty() { p.muted { "No resources." } }
        @for r in roots { (resource_node(r, &children, inline, 0)) }
    }
}

fn result_class(u: &UpdateView) -> &'static str {
    match u.status.as_str() {
        "succeeded" => "ok",
        "failed" | "cancelled" => "bad",
        _ => "",
    }
}

pub fn changes_text(u: &UpdateView) -> String {
    let Some(text) = &u.resource_changes else {
        return String::new();
    };
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) else {
        return String::new();
    };
    map.iter()
        .filter_map(|(k, v)| v.as_i64().filter(|n| *n > 0).map(|n| format!("{k} {n}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn history_table(key: &StackKey, updates: &[UpdateView], may_write: bool, csrf: &str) -> Markup {
    let base = stack_href(key);
    html! {
        table {
            thead { tr { th { "Version" } th { "Kind" } th { "Result" } th { "By" } th { "Started" } th { "Took" } th { "Changes" } th { "" } } }
            tbody {
                @for u in updates {
                    tr {
                        td { a href=(format!("{base}/updates/{}", u.version)) { (u.version) } }
                        td { (u.kind) @if !u.message.is_empty() { br; span.muted { (u.message) } } }
                        td class=(result_class(u)) { (u.status.as_str()) }
                        td { (u.author) }
                        td { (opt_when(u.started_at.or(Some(u.created_at)))) }
                        td { @if let (Some(s), Some(e)) = (u.started_at, u.ended_at) { (duration(e - s)) } }
                        td { (changes_text(u)) }
                        td {
                            @if u.version > 1 {
                                a href=(format!("{base}/changes?from={}&to={}", u.version - 1, u.version)) { "what changed" }
                            }
                            @if may_write && u.status.as_str() == "succeeded" {
                                form method="post" action=(format!("{base}/rollback")) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="version" value=(u.version);
                                    button.danger type="submit" aria-label=(format!("Roll back to version {}", u.version)) { "Roll back to this" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /{org}/{project}/{stack}`: the link `pulumi stack ls` and `pulumi up` print.
pub async fn stack(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<StackPath>,
    Q(q): Q<StackQuery>,
) -> Response {
    let key = path.key();
    let caller = &viewer.identity;
    let (stack, running) = match state.engine.get_stack(caller, &key).await {
        Ok(s) => s,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let reveal = q.show_secrets.as_deref() == Some("1");
    let view = if reveal {
        state.engine.state_view_revealed(caller, &key, None).await
    } else {
        state.engine.state_view(caller, &key, None).await
    };
    let view = match view {
        Ok(v) => v,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let history = match state.engine.history(caller, &key, 1, HISTORY_ROWS).await {
        Ok(h) => h,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let may_write = may(&state, &viewer, &key, StackPermission::Write).await;
    let may_admin = may(&state, &viewer, &key, StackPermission::Admin).await;
    let base = stack_href(&key);
    let title = format!("{}/{}", key.project, key.stack);
    let body = html! {
        div.card {
            (stack.resource_count) " resources · version " (stack.current_version.map(|v| v.to_string()).unwrap_or_else(|| "—".into()))
            " · last update " (opt_when(stack.last_update_at))
            " · created " (when(stack.created_at))
            @if let Some(by) = &stack.created_by { " by " (by) }
            div { @for (k, v) in &stack.tags { span.pill { (k) "=" (v) } } }
            @if let Some(u) = &running {
                p.bad role="status" {
                    "Locked: " (u.kind) " " a href=(format!("{base}/updates/{}", u.version)) { (u.id) } " by " (u.author)
                    ", started " (opt_when(u.started_at))
                }
            }
        }
        @if may_write || may_admin {
            div.actions {
                @if may_write && running.is_some() {
                    form method="post" action=(format!("{base}/unlock")) {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button.danger type="submit" { "Unlock (cancel the update)" }
                    }
                }
                @if may_admin {
                    form method="post" action=(format!("{base}/delete")) {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button.danger type="submit" { "Delete stack" }
                    }
                }
            }
        }
        h2 { "Outputs" }
        p {
            @if reveal {
                a href=(base.clone()) { "Hide secrets" }
            } @else {
                a #show-secrets href=(format!("{base}?show-secrets=1")) { "Show secrets" }
                span.muted { " (recorded in the audit log)" }
            }
        }
        @if view.outputs.as_object().is_some_and(|o| !o.is_empty()) {
            table #outputs {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody {
                    @for (k, v) in view.outputs.as_object().into_iter().flatten() {
                        tr { td.mono { (k) } td.mono { (match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() }) } }
                    }
                }
            }
        } @else { p.muted { "No outputs." } }
        h2 { "Resources" }
        div #resources { (resource_tree(&view)) }
        h2 { "History" }
        (history_table(&key, &history, may_write, &viewer.csrf))
    };
    layout::ok(page(&title, Some(&viewer), &crumbs(&key), body))
}
