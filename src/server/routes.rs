//! The whole route table in one place. Paths and methods follow the CLI's HTTP client
//! (upstream `pkg/backend/httpstate/client`); `reference/api-coverage.md` lists each route
//! and whether it is served.

use axum::Router;
use axum::routing::{get, head, patch, post};

use crate::server::handlers::{history, meta, secrets, stacks, updates};
use crate::server::state::AppState;

const STACK: &str = "/api/stacks/{org}/{project}/{stack}";

fn s(suffix: &str) -> String {
    format!("{STACK}{suffix}")
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/capabilities", get(meta::capabilities))
        .route("/api/user", get(meta::current_user))
        .route("/api/user/stacks", get(stacks::list_stacks))
        .route("/api/user/organizations/default", get(meta::default_org))
        .route(
            "/api/stacks/{org}/{project}",
            head(stacks::project_exists).post(stacks::create_stack),
        )
        .route(STACK, get(stacks::get_stack).delete(stacks::delete_stack))
        .route(&s("/rename"), post(stacks::rename_stack))
        .route(&s("/tags"), patch(stacks::update_tags))
        // history, export, import
        .route(&s("/updates"), get(history::history))
        .route(&s("/updates/latest"), get(history::latest_update))
        .route(&s("/updates/{version}"), get(history::update_by_version))
        .route(&s("/export"), get(history::export))
        .route(&s("/export/{version}"), get(history::export_version))
        .route(&s("/import"), post(history::import))
        // secrets
        .route(&s("/encrypt"), post(secrets::encrypt))
        .route(&s("/decrypt"), post(secrets::decrypt))
        .route(&s("/batch-encrypt"), post(secrets::batch_encrypt))
        .route(&s("/batch-decrypt"), post(secrets::batch_decrypt))
        .route(&s("/decrypt/log-decryption"), post(secrets::log_decryption))
        .route(
            &s("/decrypt/log-batch-decryption"),
            post(secrets::log_decryption),
        )
        // updates: created per kind, then always addressed as …/{kind}/{update}
        .route(&s("/{kind}"), post(updates::create_update))
        .route(
            &s("/{kind}/{update}"),
            get(updates::update_status).post(updates::start_update),
        )
        .route(
            &s("/{kind}/{update}/checkpoint"),
            patch(updates::checkpoint),
        )
        .route(
            &s("/{kind}/{update}/checkpointverbatim"),
            patch(updates::checkpoint_verbatim),
        )
        .route(
            &s("/{kind}/{update}/checkpointdelta"),
            patch(updates::checkpoint_delta),
        )
        .route(
            &s("/{kind}/{update}/journalentries"),
            patch(updates::journal_entries),
        )
        .route(
            &s("/{kind}/{update}/events"),
            get(updates::get_events).post(updates::event_single),
        )
        .route(
            &s("/{kind}/{update}/events/batch"),
            post(updates::events_batch),
        )
        .route(
            &s("/{kind}/{update}/renew_lease"),
            post(updates::renew_lease),
        )
        .route(
            &s("/{kind}/{update}/complete"),
            post(updates::complete_update),
        )
        .route(&s("/{kind}/{update}/cancel"), post(updates::cancel_update))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
}
