//! The web console: pages served by `pbackend serve` beside the API, at the paths the CLI
//! prints links to (`{org}/{project}/{stack}`, `…/updates/{version}`, `…/previews/{id}`,
//! `/user/settings/tokens`). It is one more client of the engine: each page declares here
//! the [`Permission`] it needs, exactly as an API route does, and the layer in front of it
//! authenticates the session's token and asks the engine, before the handler runs.
//! `reference/console.md` lists the pages.

mod access;
mod actions;
mod hooks;
pub mod layout;
mod login;
mod org;
pub mod session;
mod stacks;
mod tokens;
mod updates;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::engine::{EngineError, Identity, Permission, Target};
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::types::StackPermission;

/// A form is a few fields; anything larger is not one of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// What a page demands of its viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the login page.
    Anyone,
    /// A session whose identity the engine grants this permission on the stack or
    /// organization the path names.
    Session(Permission),
}

/// The signed-in person viewing a page, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub identity: Identity,
    pub csrf: String,
}

impl Viewer {
    /// Whether the engine grants the viewer `permission` on `target`: to offer an action or
    /// not (the action's own route checks again).
    pub async fn may(&self, state: &AppState, permission: Permission, target: Target) -> bool {
        state
            .engine
            .authorize(&self.identity, permission, &target)
            .await
            .is_ok()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        parts.extensions.get::<Viewer>().cloned().ok_or_else(|| {
            layout::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "page declared without a session",
                None,
            )
        })
    }
}

/// The viewer when there is one (pages any visitor may open).
pub struct MaybeViewer(pub Option<Viewer>);

impl FromRequestParts<AppState> for MaybeViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        Ok(MaybeViewer(parts.extensions.get::<Viewer>().cloned()))
    }
}

/// An engine error as the page a browser gets.
pub fn failed(e: EngineError, viewer: Option<&Viewer>) -> Response {
    let err = ApiError::from(e);
    layout::error_page(err.status(), err.message(), viewer)
}

struct Page {
    method: Method,
    path: &'static str,
    need: Need,
    handler: MethodRouter<AppState>,
}

fn p<H, T>(method: Method, path: &'static str, need: Need, handler: H) -> Page
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    Page {
        method,
        path,
        need,
        handler: on(filter, handler),
    }
}

const STACK: &str = "/{org}/{project}/{stack}";

fn pages() -> Vec<Page> {
    use Method as M;
    use Need::*;
    let any = Session(Permission::Authenticated);
    let person = Session(Permission::Person);
    let read = Session(Permission::Stack(StackPermission::Read));
    let write = Session(Permission::Stack(StackPermission::Write));
    let admin = Session(Permission::Stack(StackPermission::Admin));
    // The organization scopes the API's routes for the same things declare.
    let audit = Session(Permission::Org("audit_log:read"));
    let manage_hooks = Session(Permission::Org("webhook:manage"));
    let members = Session(Permission::Org("org_member:read"));
    let member_add = Session(Permission::Org("org_member:add"));
    let member_update = Session(Permission::Org("org_member:update"));
    let member_delete = Session(Permission::Org("org_member:delete"));
    let org_tokens = Session(Permission::Org("org_token:read"));
    let org_token_create = Session(Permission::Org("org_token:create"));
    let org_token_delete = Session(Permission::Org("org_token:delete"));
    let team_token_create = Session(Permission::Org("team:create_token"));
    let team_token_delete = Session(Permission::Org("team:delete_token"));
    vec![
        p(M::GET, "/login", Anyone, login::form),
        p(M::POST, "/login", Anyone, login::submit),
        p(M::GET, "/login/sso", Anyone, login::sso),
        p(M::POST, "/logout", any, login::logout),
        p(M::GET, "/", any, stacks::home),
        p(M::GET, "/{org}", any, stacks::org),
        p(M::GET, STACK, read, stacks::stack),
        p(
            M::GET,
            "/{org}/{project}/{stack}/updates/{version}",
            read,
            updates::update,
        ),
        p(
            M::GET,
            "/{org}/{project}/{stack}/previews/{update}",
            read,
            updates::preview,
        ),
        p(
            M::GET,
            "/{org}/{project}/{stack}/changes",
            read,
            updates::changes,
        ),
        p(
            M::GET,
            "/{org}/{project}/{stack}/resource",
            read,
            stacks::resource,
        ),
        p(
            M::GET,
            "/{org}/{project}/{stack}/referenced-by",
            read,
            stacks::referenced_by,
        ),
        p(
            M::GET,
            "/{org}/{project}/{stack}/webhooks",
            admin,
            hooks::stack_list,
        ),
        p(
            M::POST,
            "/{org}/{project}/{stack}/webhooks",
            admin,
            hooks::stack_create,
        ),
        p(
            M::GET,
            "/{org}/{project}/{stack}/webhooks/{hook}",
            admin,
            hooks::stack_show,
        ),
        p(
            M::POST,
            "/{org}/{project}/{stack}/webhooks/{hook}/ping",
            admin,
            hooks::stack_ping,
        ),
        p(
            M::POST,
            "/{org}/{project}/{stack}/webhooks/{hook}/delete",
            admin,
            hooks::stack_delete,
        ),
        p(
            M::POST,
            "/{org}/{project}/{stack}/rollback",
            write,
            actions::rollback,
        ),
        p(
            M::POST,
            "/{org}/{project}/{stack}/unlock",
            write,
            actions::unlock,
        ),
        p(
            M::POST,
            "/{org}/{project}/{stack}/delete",
            admin,
            actions::delete,
        ),
        p(M::GET, "/console/orgs/{org}/audit", audit, org::audit),
        p(
            M::GET,
            "/console/orgs/{org}/audit.csv",
            audit,
            org::audit_csv,
        ),
        p(
            M::GET,
            "/console/orgs/{org}/webhooks",
            manage_hooks,
            hooks::org_list,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/webhooks",
            manage_hooks,
            hooks::org_create,
        ),
        p(
            M::GET,
            "/console/orgs/{org}/webhooks/{hook}",
            manage_hooks,
            hooks::org_show,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/webhooks/{hook}/ping",
            manage_hooks,
            hooks::org_ping,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/webhooks/{hook}/delete",
            manage_hooks,
            hooks::org_delete,
        ),
        p(
            M::GET,
            "/console/orgs/{org}/members",
            members,
            access::members,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/members",
            member_add,
            access::add_member,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/members/{user}/role",
            member_update,
            access::change_role,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/members/{user}/remove",
            member_delete,
            access::remove_member,
        ),
        p(
            M::GET,
            "/console/orgs/{org}/tokens",
            org_tokens,
            access::tokens,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/tokens",
            org_token_create,
            access::create_org_token,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/tokens/{token}/revoke",
            org_token_delete,
            access::revoke_org_token,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/teams/{team}/tokens",
            team_token_create,
            access::create_team_token,
        ),
        p(
            M::POST,
            "/console/orgs/{org}/teams/{team}/tokens/{token}/revoke",
            team_token_delete,
            access::revoke_team_token,
        ),
        p(M::GET, "/user/settings/tokens", person, tokens::list),
        p(M::POST, "/user/settings/tokens", person, tokens::create),
        p(
            M::POST,
            "/user/settings/tokens/{token}/revoke",
            person,
            tokens::revoke,
        ),
    ]
}

/// Every page with its method, path and what it needs (for tests and `reference/`).
pub fn table() -> Vec<(Method, &'static str, Need)> {
    pages()
        .into_iter()
        .map(|p| (p.method, p.path, p.need))
        .collect()
}

/// The console's routes, each behind the layer that enforces its [`Need`].
pub fn routes(state: AppState) -> Router<AppState> {
    crate::server::routes::by_path(pages().into_iter().map(|page| {
        let need = page.need;
        let guarded = page.handler.route_layer(middleware::from_fn_with_state(
            state.clone(),
            move |st, req, next| guard(need, st, req, next),
        ));
        (page.path, guarded)
    }))
}

/// First path segments that are never an organization's pages: the API's, and the
/// management listener's (`--management-addr`), which the API's port must not answer.
const RESERVED: &[&str] = &["api", "healthz", "readyz", "metrics"];

fn is_reserved(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    RESERVED.contains(&first)
}

/// Where a visitor without a session goes: the login page, back here afterwards.
fn to_login(parts: &Parts, clear: bool, secure: bool) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut resp = if parts.method == Method::GET {
        Redirect::to(&format!("/login?next={}", layout::seg(next))).into_response()
    } else {
        layout::error_page(StatusCode::UNAUTHORIZED, "Sign in first.", None)
    };
    if clear && let Ok(v) = session::clear_cookie(secure).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn guard(need: Need, State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    // An unknown API path, or a management path asked of the API's port, is never a page:
    // it keeps the API's JSON 404.
    if is_reserved(parts.uri.path()) {
        return ApiError::not_found(format!(
            "no route for {} {}",
            parts.method,
            parts.uri.path()
        ))
        .into_response();
    }
    let secure = state.secure_cookies;
    let viewer = match session::token(&parts.headers) {
        None => None,
        Some(token) => match state.engine.authenticate(&token).await {
            Ok(mut identity) => {
                identity.source_ip = crate::server::auth::source_ip(&parts);
                Some(Viewer {
                    identity,
                    csrf: session::csrf_of(&token),
                })
            }
            // Revoked, expired, or its user disabled: the session ends here.
            Err(_) if need == Need::Anyone => None,
            Err(_) => return to_login(&parts, true, secure),
        },
    };
    if let Need::Session(permission) = need {
        let Some(v) = &viewer else {
            return to_login(&parts, false, secure);
        };
        let target = crate::server::auth::target(&mut parts, &state).await;
        if let Err(e) = state
            .engine
            .authorize(&v.identity, permission, &target)
            .await
        {
            let reason = format!("console {} {} refused: {e}", parts.method, parts.uri.path());
            state
                .engine
                .note_refusal(Some(&v.identity), None, None, reason)
                .await;
            return failed(e, Some(v));
        }
    }
    let body = if parts.method == Method::POST {
        if !session::same_origin(&parts.headers) {
            return layout::error_page(
                StatusCode::FORBIDDEN,
                "This form was sent from another site.",
                viewer.as_ref(),
            );
        }
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return layout::error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The form is too large.",
                    viewer.as_ref(),
                );
            }
        };
        // Every state-changing form of a session carries its CSRF token; the login form
        // (no session yet) is covered by the same-origin check and SameSite cookies.
        if let Some(v) = &viewer {
            let presented = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf"))
                .map(|(_, v)| v)
                .unwrap_or_default();
            let token = session::token(&parts.headers).unwrap_or_default();
            if !session::csrf_ok(&token, &presented) {
                return layout::error_page(
                    StatusCode::FORBIDDEN,
                    "The form's CSRF token is missing or wrong; reload the page and try again.",
                    Some(v),
                );
            }
        }
        Body::from(bytes)
    } else {
        body
    };
    if let Some(v) = viewer {
        parts.extensions.insert(v);
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_management_paths_are_never_pages() {
        for p in ["/api", "/api/x/y/z", "/metrics", "/healthz", "/readyz/x"] {
            assert!(is_reserved(p), "{p}");
        }
        for p in ["/", "/acme", "/acme/api/dev", "/apis", "/metrics-team/p/s"] {
            assert!(!is_reserved(p), "{p}");
        }
    }
}
