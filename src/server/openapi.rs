//! Our OpenAPI document, generated from the route table (so it cannot drift from what is
//! served) with `utoipa`'s model: every route with its method, path, parameters, credential
//! and error shape. Served at `GET /api/openapi/pulumi-spec.json`, where `pulumi api` looks
//! for it.
//!
//! Path parameters carry the service's names (`orgName`, `projectName`, `stackName`, …):
//! `pulumi api` fills `orgName`, `projectName` and `stackName` from the current context by
//! those names. Request and success bodies are not typed yet: `reference/openapi.md` lists
//! that and every other deliberate difference from the service's document.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::Method;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Paths,
    Ref, Required, ResponseBuilder, Type,
};

use crate::server::routes::{Access, RouteDef, table};

/// Our route parameters under the service's names.
const PARAM_NAMES: &[(&str, &str)] = &[
    ("org", "orgName"),
    ("project", "projectName"),
    ("stack", "stackName"),
    ("kind", "updateKind"),
    ("update", "updateID"),
    ("team", "teamName"),
    ("user", "userLogin"),
    ("role", "roleID"),
    ("token", "tokenId"),
    ("hook", "hookName"),
    ("event", "event"),
    ("version", "version"),
];

fn spec_name(param: &str) -> &str {
    PARAM_NAMES
        .iter()
        .find(|(ours, _)| *ours == param)
        .map(|(_, theirs)| *theirs)
        .unwrap_or(param)
}

/// The path with the service's parameter names, and those names in order.
fn spec_path(path: &str) -> (String, Vec<String>) {
    let mut params = vec![];
    let segments: Vec<String> = path
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) => {
                    let name = spec_name(p).to_owned();
                    params.push(name.clone());
                    format!("{{{name}}}")
                }
                None => seg.to_owned(),
            },
        )
        .collect();
    (segments.join("/"), params)
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `…::handlers::stacks::list_stacks` → (`stacks`, `list_stacks`).
fn handler_parts(handler: &str) -> (&str, &str) {
    let mut it = handler.rsplit("::");
    let f = it.next().unwrap_or(handler);
    let module = it.next().unwrap_or("");
    (module, f)
}

fn tag(module: &str) -> &'static str {
    match module {
        "stacks" | "history" => "Stacks",
        "updates" => "StackUpdates",
        "secrets" => "Secrets",
        "access" => "Organizations",
        "hooks" => "Webhooks",
        "integration" => "AuditLogs",
        "login" => "Login",
        _ => "Service",
    }
}

fn http_method(m: &Method) -> Option<HttpMethod> {
    Some(match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        Method::HEAD => HttpMethod::Head,
        _ => return None,
    })
}

/// Operation ids: the handler's name in CamelCase, with its module's when two modules have a
/// handler of that name.
fn operation_ids(routes: &[RouteDef]) -> Vec<String> {
    let mut modules_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in routes {
        let (m, f) = handler_parts(r.handler);
        let e = modules_of.entry(f).or_default();
        if !e.contains(&m) {
            e.push(m);
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    routes
        .iter()
        .map(|r| {
            let (m, f) = handler_parts(r.handler);
            let base = if modules_of[f].len() > 1 {
                format!("{}{}", camel(m), camel(f))
            } else {
                camel(f)
            };
            // One handler behind two routes (an alias path): the second gets a suffix.
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}{n}") }
        })
        .collect()
}

/// The pages of the browser login (HTML and redirects for a person's browser, not API
/// operations): served, but not in the document.
pub fn is_browser_route(path: &str) -> bool {
    !path.starts_with("/api/") || path == "/api/auth/callback"
}

fn build() -> OpenApi {
    let routes = table();
    let ids = operation_ids(&routes);
    let mut paths = Paths::new();
    for (r, id) in routes.iter().zip(ids) {
        let Some(method) = http_method(&r.method) else {
            continue;
        };
        if is_browser_route(&r.path) {
            continue;
        }
        let (path, params) = spec_path(&r.path);
        let (module, f) = handler_parts(r.handler);
        let mut op = OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(f.replace('_', " ")))
            .tag(tag(module));
        for p in params {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(p)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if matches!(r.method, Method::POST | Method::PUT | Method::PATCH) {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                            .build(),
                    )
                    .build(),
            ));
        }
        let error = if r.method == Method::HEAD {
            // No body, as HEAD has none.
            ResponseBuilder::new()
                .description("An error (status only).")
                .build()
        } else {
            ResponseBuilder::new()
                .description("An error in the Pulumi shape: `code` equals the HTTP status.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorResponse")))
                        .build(),
                )
                .build()
        };
        op = op
            .response(
                "2XX",
                ResponseBuilder::new().description("Success.").build(),
            )
            .response("default", error);
        op = match r.access {
            Access::Public => op,
            Access::Token(p) => op
                .description(Some(format!("Needs an API token with `{p}`.")))
                .security(SecurityRequirement::new::<_, _, &str>("token", [])),
            Access::Lease | Access::LeaseOrFinished => op
                .description(Some(
                    "Needs the update's lease token (`update-token`).".to_owned(),
                ))
                .security(SecurityRequirement::new::<_, _, &str>("updateToken", [])),
        };
        paths.add_path_operation(path, vec![method], op.build());
    }
    let error_schema = ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("The HTTP status.")),
        )
        .required("code")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("What went wrong.")),
        )
        .required("message")
        .build();
    let components = ComponentsBuilder::new()
        .schema("ErrorResponse", error_schema)
        .security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`token <API token>`",
            ))),
        )
        .security_scheme(
            "updateToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`update-token <lease token>`",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("pbackend")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The Pulumi Cloud API as pbackend serves it: generated from its route table.",
                )),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document as served (built once).
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec_pretty(&build()).unwrap_or_else(|_| b"{}".to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_unique_operation() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut n = 0;
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                n += 1;
                assert!(
                    ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                    "{op}"
                );
            }
        }
        let api_routes = table()
            .iter()
            .filter(|r| !is_browser_route(&r.path))
            .count();
        assert_eq!(n, api_routes);
        assert!(doc["components"]["schemas"]["ErrorResponse"].is_object());
        assert!(doc["paths"]["/api/stacks/{orgName}/{projectName}/{stackName}"].is_object());
    }

    #[test]
    fn names() {
        assert_eq!(camel("list_org_stacks"), "ListOrgStacks");
        assert_eq!(
            handler_parts("pbackend::server::handlers::stacks::list_stacks"),
            ("stacks", "list_stacks")
        );
        let (p, params) = spec_path("/api/stacks/{org}/{project}/{stack}/hooks/{hook}");
        assert_eq!(
            p,
            "/api/stacks/{orgName}/{projectName}/{stackName}/hooks/{hookName}"
        );
        assert_eq!(params.len(), 4);
    }
}
