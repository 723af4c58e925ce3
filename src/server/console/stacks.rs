//! Stack lists and a stack's page: its resources as a tree by parent, its outputs, tags,
//! history, and the actions the viewer may take.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use crate::engine::operator::StackOverview;
use crate::engine::state::browse::{ResourceView, StateView, references_out};
use crate::engine::{Permission, StackListQuery, Target, UpdateView};
use crate::server::console::layout::{self, duration, opt_when, page, seg, when};
use crate::server::console::org::org_base;
use crate::server::console::{Viewer, failed};
use crate::server::extract::{P, Q};
use crate::server::handlers::OrgPath;
use crate::server::handlers::StackPath;
use crate::server::state::AppState;
use crate::types::{StackKey, StackPermission};

/// Resources whose inputs and outputs a stack page shows inline; beyond, each has its own
/// page, so a page of a large stack stays small.
const INLINE_PROPERTIES: usize = 100;
/// Resources one page of the tree shows: a page of a large stack stays small enough for a
/// browser to lay out quickly (`reference/performance.md`, the console).
const RESOURCE_PAGE: usize = 500;
/// Stacks one list shows at most.
const MAX_LISTED_STACKS: usize = 10_000;
/// Updates a stack page lists.
const HISTORY_ROWS: i64 = 50;

#[derive(Deserialize, Default)]
pub struct StackQuery {
    #[serde(default, rename = "show-secrets")]
    show_secrets: Option<String>,
    /// Filters the resources.
    #[serde(default)]
    q: Option<String>,
    /// The page of resources, from 1.
    #[serde(default)]
    page: Option<String>,
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

fn stack_table(stacks: &[StackOverview], filter: &str, now: i64) -> Markup {
    let f = filter.to_lowercase();
    let shown: Vec<&StackOverview> = stacks
        .iter()
        .filter(|o| {
            let s = &o.stack;
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
        table #stacks {
            thead { tr { th { "Stack" } th { "Resources" } th { "Last update" } th { "Locked by" } th { "Tags" } } }
            tbody {
                @for o in &shown {
                    @let s = &o.stack;
                    tr {
                        td { a href=(stack_href(&s.key)) { (s.key.org) "/" (s.key.project) "/" (s.key.stack) } }
                        td { (s.resource_count) }
                        td { (opt_when(s.last_update_at)) }
                        td {
                            @if let Some(u) = &o.lock {
                                span class=(if u.lease_live(now) { "bad" } else { "muted" }) {
                                    (u.author) " (" (u.kind) @if !u.lease_live(now) { ", lease expired" } ")"
                                }
                            }
                        }
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
) -> Result<Vec<StackOverview>, Response> {
    state
        .engine
        .stacks_with_locks(
            &viewer.identity,
            StackListQuery {
                org,
                project: None,
                tag_name: None,
                tag_value: None,
                continuation: None,
            },
            MAX_LISTED_STACKS,
        )
        .await
        .map_err(|e| failed(e, Some(viewer)))
}

/// `GET /`: every stack the viewer can see.
pub async fn home(State(state): State<AppState>, viewer: Viewer, Q(s): Q<Search>) -> Response {
    let stacks = match list(&state, &viewer, None).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = s.q.unwrap_or_default();
    // The organizations the viewer belongs to, and those of the stacks it can see.
    let orgs: std::collections::BTreeSet<&str> = viewer
        .identity
        .orgs
        .keys()
        .map(String::as_str)
        .chain(stacks.iter().map(|o| o.stack.key.org.as_str()))
        .collect();
    let body = html! {
        @if !orgs.is_empty() {
            nav #orgs aria-label="Organizations" {
                "Organizations: "
                @for (i, o) in orgs.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(format!("/{}", seg(o))) { (o) }
                }
            }
        }
        (stack_table(&stacks, &filter, state.engine.now()))
    };
    layout::ok(page("Stacks", Some(&viewer), &[], body))
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
        ("org_token:read", "Tokens", "tokens"),
    ] {
        if viewer
            .may(&state, Permission::Org(scope), target.clone())
            .await
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
        (stack_table(&stacks, &filter, state.engine.now()))
    };
    layout::ok(page(&path.org, Some(&viewer), &crumbs, body))
}

fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre { (text) } }
}

/// Resources in tree order (each after its parent, children in state order) with their
/// depth; a resource whose parent is not in the state is a root. Cycle-safe: each resource
/// is placed once.
pub fn tree_order(view: &StateView) -> Vec<(&ResourceView, usize)> {
    let urns: HashSet<&str> = view.resources.iter().map(|r| r.urn.as_str()).collect();
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
    let mut out = Vec::with_capacity(view.resources.len());
    let mut placed: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(&ResourceView, usize)> = roots.into_iter().rev().map(|r| (r, 0)).collect();
    while let Some((r, depth)) = stack.pop() {
        if !placed.insert(r.urn.as_str()) {
            continue;
        }
        out.push((r, depth));
        if let Some(kids) = children.get(r.urn.as_str()) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    out
}

pub fn resource_href(key: &StackKey, urn: &str) -> String {
    format!("{}/resource?urn={}", stack_href(key), seg(urn))
}

/// The resources section: a filter, one page of the tree, and the pages around it. Small
/// stacks show each resource's inputs and outputs inline; every resource has its own page.
fn resource_tree(key: &StackKey, view: &StateView, q: &StackQuery) -> Markup {
    let filter = q.q.clone().unwrap_or_default();
    let needle = filter.to_lowercase();
    let all = tree_order(view);
    let shown: Vec<(&ResourceView, usize)> = all
        .into_iter()
        .filter(|(r, _)| {
            needle.is_empty()
                || r.urn.to_lowercase().contains(&needle)
                || r.ty.to_lowercase().contains(&needle)
        })
        .collect();
    let pages = shown.len().div_ceil(RESOURCE_PAGE).max(1);
    let page_no = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let from = (page_no - 1) * RESOURCE_PAGE;
    let slice = &shown[from.min(shown.len())..(from + RESOURCE_PAGE).min(shown.len())];
    let inline = view.resources.len() <= INLINE_PROPERTIES;
    let base = stack_href(key);
    let link = |n: usize| {
        let mut pairs = vec![("page", n.to_string())];
        if !filter.is_empty() {
            pairs.push(("q", filter.clone()));
        }
        format!(
            "{base}?{}#resources",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    html! {
        form role="search" method="get" action=(base) {
            input type="search" name="q" value=(filter) placeholder="Filter by name, type or URN" aria-label="Filter resources";
            " " input type="submit" value="Filter";
        }
        @if shown.is_empty() { p.muted { "No resources." } }
        @else {
            p.muted { "Resources " (from + 1) "–" (from + slice.len()) " of " (shown.len()) }
            table #resources {
                thead { tr { th { "Name" } th { "Type" } th { "ID" } } }
                tbody {
                    @for (r, depth) in slice {
                        tr data-urn=(r.urn) data-depth=(depth) {
                            td style=(format!("padding-left:{:.1}em", 0.7 + 1.4 * (*depth).min(20) as f64)) {
                                a href=(resource_href(key, &r.urn)) { strong { (r.name) } }
                                @if r.protect { " " span.pill { "protected" } }
                                @if inline && (has_props(&r.inputs) || has_props(&r.outputs)) {
                                    details.res {
                                        summary { "Inputs and outputs" }
                                        div.props {
                                            @if has_props(&r.inputs) { div { "Inputs" } (json_block(&r.inputs)) }
                                            @if has_props(&r.outputs) { div { "Outputs" } (json_block(&r.outputs)) }
                                        }
                                    }
                                }
                            }
                            td.mono { (r.ty) }
                            td.mono { (r.id.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav aria-label="Resource pages" {
                    @if page_no > 1 { a href=(link(page_no - 1)) { "← Previous" } " " }
                    "Page " (page_no) " of " (pages)
                    @if page_no < pages { " " a href=(link(page_no + 1)) { "Next →" } }
                }
            }
        }
    }
}

fn has_props(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| !o.is_empty())
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
    let references = references_out(&view);
    let on_stack = |need| viewer.may(&state, Permission::Stack(need), Target::Stack(key.clone()));
    let may_write = on_stack(StackPermission::Write).await;
    let may_admin = on_stack(StackPermission::Admin).await;
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
                    a.webhooks href=(format!("{base}/webhooks")) { "Webhooks" } " "
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
        h2 { "Stack references" }
        @if references.is_empty() { p.muted { "This stack reads no other stack's outputs." } }
        @else {
            p.muted { "Stacks whose outputs this one reads:" }
            ul #references {
                @for r in &references {
                    li {
                        @if r.split('/').count() == 3 { a href=(format!("/{}", r.split('/').map(seg).collect::<Vec<_>>().join("/"))) { (r) } }
                        @else { (r) }
                    }
                }
            }
        }
        p { a #referenced-by href=(format!("{base}/referenced-by")) { "Which stacks read this one?" } }
        h2 { "Resources" }
        (resource_tree(&key, &view, &q))
        h2 { "History" }
        (history_table(&key, &history, may_write, &viewer.csrf))
    };
    layout::ok(page(&title, Some(&viewer), &crumbs(&key), body))
}

#[derive(Deserialize, Default)]
pub struct ResourceQuery {
    #[serde(default)]
    urn: Option<String>,
    #[serde(default, rename = "show-secrets")]
    show_secrets: Option<String>,
}

/// `GET /{org}/{project}/{stack}/resource?urn=…`: one resource, its parent and children,
/// inputs and outputs (secrets masked unless asked for).
pub async fn resource(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<StackPath>,
    Q(q): Q<ResourceQuery>,
) -> Response {
    let key = path.key();
    let caller = &viewer.identity;
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
    let urn = q.urn.unwrap_or_default();
    let Some(r) = view.resources.iter().find(|r| r.urn == urn) else {
        return layout::error_page(
            axum::http::StatusCode::NOT_FOUND,
            "The stack's current state has no such resource.",
            Some(&viewer),
        );
    };
    let children: Vec<&ResourceView> = view
        .resources
        .iter()
        .filter(|c| c.parent.as_deref() == Some(urn.as_str()))
        .collect();
    let here = resource_href(&key, &urn);
    let body = html! {
        div.card {
            div.mono { (r.urn) }
            div { "Type " span.mono { (r.ty) } }
            @if let Some(id) = &r.id { div { "ID " span.mono { (id) } } }
            @if let Some(p) = &r.parent { div { "Parent " a href=(resource_href(&key, p)) { (p.rsplit("::").next().unwrap_or(p)) } } }
            @if r.protect { div { span.pill { "protected" } } }
        }
        p {
            @if reveal { a href=(here.clone()) { "Hide secrets" } }
            @else { a href=(format!("{here}&show-secrets=1")) { "Show secrets" } span.muted { " (recorded in the audit log)" } }
        }
        h2 { "Inputs" }
        (json_block(&r.inputs))
        h2 { "Outputs" }
        (json_block(&r.outputs))
        @if !children.is_empty() {
            h2 { "Children" }
            ul {
                @for c in children.iter().take(RESOURCE_PAGE) {
                    li { a href=(resource_href(&key, &c.urn)) { (c.name) } " " span.muted.mono { (c.ty) } }
                }
            }
            @if children.len() > RESOURCE_PAGE { p.muted { "and " (children.len() - RESOURCE_PAGE) " more" } }
        }
    };
    layout::ok(page(&r.name, Some(&viewer), &crumbs(&key), body))
}

/// `GET /{org}/{project}/{stack}/referenced-by`: the stacks of the organization that read
/// this one's outputs (each of their states is read, so only on request).
pub async fn referenced_by(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<StackPath>,
) -> Response {
    let key = path.key();
    let list = match state.engine.referenced_by(&viewer.identity, &key).await {
        Ok(l) => l,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let body = html! {
        @if list.is_empty() { p.muted { "No stack of " (key.org) " you can see reads this one." } }
        @else {
            ul #referenced-by {
                @for k in &list { li { a href=(stack_href(k)) { (k) } } }
            }
        }
    };
    layout::ok(page(
        &format!("Stacks that read {}/{}", key.project, key.stack),
        Some(&viewer),
        &crumbs(&key),
        body,
    ))
}
