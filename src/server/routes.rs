//! The whole route table in one place. Paths and methods follow the CLI's HTTP client
//! (upstream `pkg/backend/httpstate/client`); `reference/api-coverage.md` lists each route
//! and whether it is served.
//!
//! Every route states here what it demands of its caller ([`Access`]). The demand is checked
//! by a layer in front of the handler, from the headers and the path alone, so a request
//! that fails it is answered before a byte of its body is read. Tests enumerate this table
//! ([`table`]) to prove that for every route.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::server::auth;
use crate::server::handlers::{history, meta, secrets, stacks, updates};
use crate::server::state::AppState;

/// What a route demands before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the capabilities the CLI reads before it has logged in.
    Public,
    /// An API token (`Authorization: token …`). The engine then checks what the caller may
    /// do with the stack or organization named in the path.
    Token,
    /// The live lease of the update named in the path (`Authorization: update-token …`).
    Lease,
    /// The lease of the update named in the path, also once it has finished (a retried
    /// `complete`).
    LeaseOrFinished,
}

/// One route as declared: for the router, and for tests that walk every route.
#[derive(Debug, Clone)]
pub struct RouteDef {
    pub method: Method,
    pub path: String,
    pub access: Access,
}

const STACK: &str = "/api/stacks/{org}/{project}/{stack}";
const UPDATE: &str = "/api/stacks/{org}/{project}/{stack}/{kind}/{update}";

fn s(suffix: &str) -> String {
    format!("{STACK}{suffix}")
}

fn u(suffix: &str) -> String {
    format!("{UPDATE}{suffix}")
}

struct Entry {
    def: RouteDef,
    handler: MethodRouter<AppState>,
}

fn r<H, T>(method: Method, path: impl Into<String>, access: Access, handler: H) -> Entry
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    Entry {
        def: RouteDef {
            method,
            path: path.into(),
            access,
        },
        handler: on(filter, handler),
    }
}

fn entries() -> Vec<Entry> {
    use Access::*;
    use Method as M;
    vec![
        r(M::GET, "/api/capabilities", Public, meta::capabilities),
        r(M::GET, "/api/user", Token, meta::current_user),
        r(M::GET, "/api/user/stacks", Token, stacks::list_stacks),
        r(
            M::GET,
            "/api/user/organizations/default",
            Token,
            meta::default_org,
        ),
        r(
            M::HEAD,
            "/api/stacks/{org}/{project}",
            Token,
            stacks::project_exists,
        ),
        r(
            M::POST,
            "/api/stacks/{org}/{project}",
            Token,
            stacks::create_stack,
        ),
        r(M::GET, STACK, Token, stacks::get_stack),
        r(M::DELETE, STACK, Token, stacks::delete_stack),
        r(M::POST, s("/rename"), Token, stacks::rename_stack),
        r(M::POST, s("/begin-update"), Token, updates::begin_update),
        r(M::GET, s("/outputs"), Token, updates::stack_outputs),
        r(M::PATCH, s("/tags"), Token, stacks::update_tags),
        // history, export, import
        r(M::GET, s("/updates"), Token, history::history),
        r(M::GET, s("/updates/latest"), Token, history::latest_update),
        r(
            M::GET,
            s("/updates/{version}"),
            Token,
            history::update_by_version,
        ),
        r(M::GET, s("/export"), Token, history::export),
        r(
            M::GET,
            s("/export/{version}"),
            Token,
            history::export_version,
        ),
        r(M::POST, s("/import"), Token, history::import),
        // secrets
        r(M::POST, s("/encrypt"), Token, secrets::encrypt),
        r(M::POST, s("/decrypt"), Token, secrets::decrypt),
        r(M::POST, s("/batch-encrypt"), Token, secrets::batch_encrypt),
        r(M::POST, s("/batch-decrypt"), Token, secrets::batch_decrypt),
        r(
            M::POST,
            s("/decrypt/log-decryption"),
            Token,
            secrets::log_decryption,
        ),
        r(
            M::POST,
            s("/decrypt/log-batch-decryption"),
            Token,
            secrets::log_decryption,
        ),
        // updates: created per kind, then always addressed as …/{kind}/{update}
        r(M::POST, s("/{kind}"), Token, updates::create_update),
        r(M::GET, u(""), Token, updates::update_status),
        r(M::POST, u(""), Token, updates::start_update),
        r(M::GET, u("/events"), Token, updates::get_events),
        r(M::POST, u("/cancel"), Token, updates::cancel_update),
        r(M::PATCH, u("/checkpoint"), Lease, updates::checkpoint),
        r(
            M::PATCH,
            u("/checkpointverbatim"),
            Lease,
            updates::checkpoint_verbatim,
        ),
        r(
            M::PATCH,
            u("/checkpointdelta"),
            Lease,
            updates::checkpoint_delta,
        ),
        r(
            M::PATCH,
            u("/journalentries"),
            Lease,
            updates::journal_entries,
        ),
        r(M::POST, u("/events"), Lease, updates::event_single),
        r(M::POST, u("/events/batch"), Lease, updates::events_batch),
        r(M::POST, u("/renew_lease"), Lease, updates::renew_lease),
        r(
            M::POST,
            u("/complete"),
            LeaseOrFinished,
            updates::complete_update,
        ),
    ]
}

/// Every route with its method and access, in declaration order.
pub fn table() -> Vec<RouteDef> {
    entries().into_iter().map(|e| e.def).collect()
}

/// The router: each route behind the layer that enforces its [`Access`].
pub fn routes(state: AppState) -> Router<AppState> {
    let mut by_path: Vec<(String, MethodRouter<AppState>)> = Vec::new();
    for Entry { def, handler } in entries() {
        let guarded = match def.access {
            Access::Public => handler,
            access => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |st, req, next| auth::require(access, st, req, next),
            )),
        };
        match by_path.iter_mut().find(|(p, _)| *p == def.path) {
            Some((_, mr)) => {
                let prev = std::mem::take(mr);
                *mr = prev.merge(guarded);
            }
            None => by_path.push((def.path, guarded)),
        }
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(&path, mr);
    }
    router
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
}
