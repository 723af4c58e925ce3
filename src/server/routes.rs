//! The whole route table in one place. Paths and methods follow the CLI's HTTP client
//! (upstream `pkg/backend/httpstate/client`); `reference/api-coverage.md` lists each route
//! and whether it is served.
//!
//! Every route states here what it demands of its caller ([`Access`]): a credential, and for
//! API tokens the [`Permission`] the engine must grant on the stack or organization the path
//! names. Both are checked by a layer in front of the handler, from the headers and the path
//! alone, so a request that fails is answered before a byte of its body is read. Tests
//! enumerate this table ([`table`]) to prove that for every route, and write the route ×
//! role matrix of `reference/` from it.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::engine::Permission;
use crate::server::auth;
use crate::server::handlers::{
    access, history, hooks, integration, login, meta, secrets, stacks, updates,
};
use crate::server::state::AppState;
use crate::types::StackPermission;

/// What a route demands before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the capabilities the CLI reads before it has logged in.
    Public,
    /// An API token (`Authorization: token …`) whose identity the engine grants this
    /// permission on the stack or organization named in the path.
    Token(Permission),
    /// The live lease of the update named in the path (`Authorization: update-token …`).
    Lease,
    /// The lease of the update named in the path, also once it has finished (a retried
    /// `complete`).
    LeaseOrFinished,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Public => f.write_str("Public"),
            Access::Token(p) => write!(f, "Token({p})"),
            Access::Lease => f.write_str("Lease"),
            Access::LeaseOrFinished => f.write_str("LeaseOrFinished"),
        }
    }
}

/// One route as declared: for the router, and for tests that walk every route.
#[derive(Debug, Clone)]
pub struct RouteDef {
    pub method: Method,
    pub path: String,
    pub access: Access,
    /// The handler's path (`pbackend::server::handlers::stacks::list_stacks`): names the
    /// operation in our OpenAPI document.
    pub handler: &'static str,
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
            handler: std::any::type_name::<H>(),
        },
        handler: on(filter, handler),
    }
}

const ORG: &str = "/api/orgs/{org}";

fn o(suffix: &str) -> String {
    format!("{ORG}{suffix}")
}

fn entries() -> Vec<Entry> {
    use Access::*;
    use Method as M;
    let any = Token(Permission::Authenticated);
    let person = Token(Permission::Person);
    let read = Token(Permission::Stack(StackPermission::Read));
    let write = Token(Permission::Stack(StackPermission::Write));
    let admin = Token(Permission::Stack(StackPermission::Admin));
    let org = |scope: &'static str| Token(Permission::Org(scope));
    vec![
        r(M::GET, "/api/capabilities", Public, meta::capabilities),
        r(
            M::GET,
            "/api/openapi/pulumi-spec.json",
            Public,
            meta::openapi_spec,
        ),
        r(M::GET, "/api/user", any, meta::current_user),
        r(M::GET, "/api/user/stacks", any, stacks::list_stacks),
        r(M::GET, "/api/stacks/{org}", any, stacks::list_org_stacks),
        r(
            M::GET,
            "/api/user/organizations/default",
            any,
            meta::default_org,
        ),
        // personal tokens
        r(M::GET, "/api/user/tokens", person, access::list_my_tokens),
        r(M::POST, "/api/user/tokens", person, access::create_my_token),
        r(
            M::DELETE,
            "/api/user/tokens/{token}",
            person,
            access::delete_my_token,
        ),
        // logins: the OAuth token endpoint (token exchange, refresh) and the browser flow
        r(M::POST, "/api/oauth/token", Public, login::oauth_token),
        r(M::GET, "/cli-login", Public, login::cli_login),
        r(M::GET, "/api/auth/callback", Public, login::callback),
        r(M::GET, "/welcome/cli", Public, login::welcome),
        // the audit log: organization admins (scope `audit_log:read`)
        r(
            M::GET,
            "/api/orgs/{org}/auditlogs",
            org("audit_log:read"),
            integration::list_audit_log_v1,
        ),
        r(
            M::GET,
            "/api/orgs/{org}/auditlogs/export",
            org("audit_log:read"),
            integration::export_audit_log_v1,
        ),
        r(
            M::GET,
            "/api/orgs/{org}/auditlogs/v2",
            org("audit_log:read"),
            integration::list_audit_log_v2,
        ),
        r(
            M::GET,
            "/api/orgs/{org}/auditlogs/v2/export",
            org("audit_log:read"),
            integration::export_audit_log_v2,
        ),
        // webhooks: an organization's (admins, scope `webhook:manage`), a stack's (stack admins)
        r(
            M::GET,
            "/api/orgs/{org}/hooks",
            org("webhook:manage"),
            hooks::list_org_hooks,
        ),
        r(
            M::POST,
            "/api/orgs/{org}/hooks",
            org("webhook:manage"),
            hooks::create_org_hook,
        ),
        r(
            M::GET,
            "/api/orgs/{org}/hooks/{hook}",
            org("webhook:manage"),
            hooks::get_org_hook,
        ),
        r(
            M::PATCH,
            "/api/orgs/{org}/hooks/{hook}",
            org("webhook:manage"),
            hooks::update_org_hook,
        ),
        r(
            M::DELETE,
            "/api/orgs/{org}/hooks/{hook}",
            org("webhook:manage"),
            hooks::delete_org_hook,
        ),
        r(
            M::POST,
            "/api/orgs/{org}/hooks/{hook}/ping",
            org("webhook:manage"),
            hooks::ping_org_hook,
        ),
        r(
            M::GET,
            "/api/orgs/{org}/hooks/{hook}/deliveries",
            org("webhook:manage"),
            hooks::org_hook_deliveries,
        ),
        r(
            M::POST,
            "/api/orgs/{org}/hooks/{hook}/deliveries/{event}/redeliver",
            org("webhook:manage"),
            hooks::redeliver_org_hook,
        ),
        r(M::GET, s("/hooks"), admin, hooks::list_stack_hooks),
        r(M::POST, s("/hooks"), admin, hooks::create_stack_hook),
        r(M::GET, s("/hooks/{hook}"), admin, hooks::get_stack_hook),
        r(
            M::PATCH,
            s("/hooks/{hook}"),
            admin,
            hooks::update_stack_hook,
        ),
        r(
            M::DELETE,
            s("/hooks/{hook}"),
            admin,
            hooks::delete_stack_hook,
        ),
        r(
            M::POST,
            s("/hooks/{hook}/ping"),
            admin,
            hooks::ping_stack_hook,
        ),
        r(
            M::GET,
            s("/hooks/{hook}/deliveries"),
            admin,
            hooks::stack_hook_deliveries,
        ),
        r(
            M::POST,
            s("/hooks/{hook}/deliveries/{event}/redeliver"),
            admin,
            hooks::redeliver_stack_hook,
        ),
        r(
            M::HEAD,
            "/api/stacks/{org}/{project}",
            any,
            stacks::project_exists,
        ),
        r(
            M::POST,
            "/api/stacks/{org}/{project}",
            org("stack:create"),
            stacks::create_stack,
        ),
        r(M::GET, STACK, read, stacks::get_stack),
        r(M::DELETE, STACK, admin, stacks::delete_stack),
        r(M::POST, s("/rename"), admin, stacks::rename_stack),
        r(M::POST, s("/begin-update"), write, updates::begin_update),
        r(M::GET, s("/outputs"), read, updates::stack_outputs),
        r(M::PATCH, s("/tags"), write, stacks::update_tags),
        // who may use the stack
        r(M::GET, s("/teams"), read, access::stack_teams),
        r(
            M::GET,
            s("/collaborators"),
            read,
            access::stack_collaborators,
        ),
        r(
            M::PATCH,
            "/api/console/stacks/{org}/{project}/{stack}/teams/{team}",
            admin,
            access::set_stack_team,
        ),
        r(
            M::PATCH,
            s("/collaborators/{user}"),
            admin,
            access::set_stack_collaborator,
        ),
        r(
            M::DELETE,
            s("/collaborators/{user}"),
            admin,
            access::remove_stack_collaborator,
        ),
        // history, export, import
        r(M::GET, s("/config"), read, stacks::stack_config),
        r(M::GET, s("/updates"), read, history::history),
        r(M::GET, s("/updates/latest"), read, history::latest_update),
        r(
            M::GET,
            s("/updates/{version}"),
            read,
            history::update_by_version,
        ),
        r(M::GET, s("/export"), read, history::export),
        r(
            M::GET,
            s("/export/{version}"),
            read,
            history::export_version,
        ),
        r(M::POST, s("/import"), write, history::import),
        // secrets: reading a stack includes its secrets, as the service's read permission says
        r(M::POST, s("/encrypt"), read, secrets::encrypt),
        r(M::POST, s("/decrypt"), read, secrets::decrypt),
        r(M::POST, s("/batch-encrypt"), read, secrets::batch_encrypt),
        r(M::POST, s("/batch-decrypt"), read, secrets::batch_decrypt),
        r(
            M::POST,
            s("/decrypt/log-decryption"),
            read,
            secrets::log_decryption,
        ),
        r(
            M::POST,
            s("/decrypt/log-batch-decryption"),
            read,
            secrets::log_decryption,
        ),
        // updates: created per kind, then always addressed as …/{kind}/{update}
        r(M::POST, s("/{kind}"), write, updates::create_update),
        r(M::GET, u(""), read, updates::update_status),
        r(M::POST, u(""), write, updates::start_update),
        r(M::GET, u("/events"), read, updates::get_events),
        r(M::POST, u("/cancel"), write, updates::cancel_update),
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
        // organizations: members, teams, roles, machine tokens
        r(
            M::GET,
            o("/members"),
            org("org_member:read"),
            access::list_members,
        ),
        r(
            M::POST,
            o("/members/{user}"),
            org("org_member:add"),
            access::add_member,
        ),
        r(
            M::PATCH,
            o("/members/{user}"),
            org("org_member:update"),
            access::update_member,
        ),
        r(
            M::DELETE,
            o("/members/{user}"),
            org("org_member:delete"),
            access::remove_member,
        ),
        r(M::GET, o("/roles"), org("role:read"), access::list_roles),
        r(
            M::POST,
            o("/roles"),
            org("role:create"),
            access::create_role,
        ),
        r(
            M::GET,
            o("/roles/{role}"),
            org("role:read"),
            access::get_role,
        ),
        r(
            M::PATCH,
            o("/roles/{role}"),
            org("role:update"),
            access::update_role,
        ),
        r(
            M::DELETE,
            o("/roles/{role}"),
            org("role:delete"),
            access::delete_role,
        ),
        r(M::GET, o("/teams"), org("team:list"), access::list_teams),
        r(
            M::POST,
            o("/teams/pulumi"),
            org("team:create"),
            access::create_team,
        ),
        r(
            M::GET,
            o("/teams/{team}"),
            org("team:read"),
            access::get_team,
        ),
        r(
            M::PATCH,
            o("/teams/{team}"),
            org("team:update"),
            access::update_team,
        ),
        r(
            M::DELETE,
            o("/teams/{team}"),
            org("team:delete"),
            access::delete_team,
        ),
        r(
            M::GET,
            o("/teams/{team}/roles"),
            org("team:read"),
            access::team_roles,
        ),
        r(
            M::POST,
            o("/teams/{team}/roles/{role}"),
            org("team:update"),
            access::assign_team_role,
        ),
        r(
            M::DELETE,
            o("/teams/{team}/roles/{role}"),
            org("team:update"),
            access::unassign_team_role,
        ),
        r(
            M::GET,
            o("/teams/{team}/tokens"),
            org("team:list_tokens"),
            access::list_team_tokens,
        ),
        r(
            M::POST,
            o("/teams/{team}/tokens"),
            org("team:create_token"),
            access::create_team_token,
        ),
        r(
            M::DELETE,
            o("/teams/{team}/tokens/{token}"),
            org("team:delete_token"),
            access::delete_team_token,
        ),
        r(
            M::GET,
            o("/tokens"),
            org("org_token:read"),
            access::list_org_tokens,
        ),
        r(
            M::POST,
            o("/tokens"),
            org("org_token:create"),
            access::create_org_token,
        ),
        r(
            M::DELETE,
            o("/tokens/{token}"),
            org("org_token:delete"),
            access::delete_org_token,
        ),
    ]
}

/// Every route with its method and access, in declaration order.
pub fn table() -> Vec<RouteDef> {
    entries().into_iter().map(|e| e.def).collect()
}

/// The router: each route behind the layer that enforces its [`Access`].
pub fn routes(state: AppState) -> Router<AppState> {
    let guarded = entries().into_iter().map(|Entry { def, handler }| {
        let handler = match def.access {
            Access::Public => handler,
            access => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |st, req, next| auth::require(access, st, req, next),
            )),
        };
        (def.path, handler)
    });
    by_path(guarded)
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
}

/// A router from (path, handler) pairs, merging the methods of pairs that share a path (one
/// `route` call per path, as axum requires).
pub(crate) fn by_path<P: AsRef<str> + PartialEq>(
    pairs: impl IntoIterator<Item = (P, MethodRouter<AppState>)>,
) -> Router<AppState> {
    let mut merged: Vec<(P, MethodRouter<AppState>)> = Vec::new();
    for (path, handler) in pairs {
        match merged.iter_mut().find(|(p, _)| *p == path) {
            Some((_, mr)) => {
                let prev = std::mem::take(mr);
                *mr = prev.merge(handler);
            }
            None => merged.push((path, handler)),
        }
    }
    merged
        .into_iter()
        .fold(Router::new(), |router, (path, mr)| {
            router.route(path.as_ref(), mr)
        })
}
