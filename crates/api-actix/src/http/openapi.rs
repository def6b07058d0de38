//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::routes::{
    agents, api_keys, audit, auth, collections, conversations, documents, jobs, openai, ops,
    providers, runs, search, tenants, usage, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agentic Platform API",
        description = "Multi-tenant backend for AI agents with retrieval-augmented generation. \
            Authenticate with `Authorization: Bearer <access JWT | API key>`. Errors are RFC 9457 \
            problem details with a stable `code`; another tenant's resource answers 404.",
        version = "1"
    ),
    paths(
        auth::login, auth::refresh, auth::logout, auth::logout_all, auth::me, auth::change_password,
        tenants::create, tenants::list, tenants::suspend, tenants::resume, tenants::current,
        tenants::rename, tenants::update_settings,
        users::create, users::list, users::get, users::update, users::delete, users::restore, users::purge,
        users::reset_password,
        api_keys::create, api_keys::list, api_keys::revoke,
        agents::create, agents::list, agents::get, agents::update, agents::delete, agents::restore, agents::purge,
        collections::spaces, collections::create, collections::list, collections::get,
        collections::update, collections::delete, collections::restore, collections::purge,
        collections::reembed,
        documents::upload, documents::list, documents::get, documents::replace, documents::delete,
        documents::restore,
        documents::purge,
        jobs::jobs, jobs::job, jobs::cancel,
        search::search, search::search_many,
        audit::list,
        conversations::create, conversations::list, conversations::get, conversations::rename,
        conversations::delete, conversations::restore, conversations::purge,
        conversations::messages, conversations::post_message, conversations::regenerate,
        conversations::feedback,
        runs::get, runs::events, runs::cancel,
        usage::summary,
        providers::create, providers::list, providers::get, providers::update, providers::delete,
        openai::chat_completions, openai::models, openai::embeddings,
        ops::healthz, ops::readyz,
    ),
    components(schemas(
        crate::http::error::Problem, crate::http::error::ProblemField, crate::http::rules::JsonValue,
        conversations::ViewName, usage::GroupBy
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign in, refresh, sign out"),
        (name = "tenants", description = "Provisioning (platform keys) and the caller's tenant"),
        (name = "users", description = "The tenant's users (admins)"),
        (name = "api-keys", description = "The tenant's API keys (admins)"),
        (name = "agents", description = "Agents: soft-deletable, restorable, purgeable"),
        (name = "collections", description = "Knowledge collections and embedding spaces"),
        (name = "documents", description = "Documents and their ingestion jobs"),
        (name = "search", description = "Vector, full-text and hybrid search over collections"),
        (name = "audit", description = "The append-only audit log (admins)"),
        (name = "conversations", description = "Conversations with agents: messages as a tree, answers, ratings"),
        (name = "runs", description = "How answers are made: status, context, events (SSE), cancel"),
        (name = "providers", description = "The tenant's own model providers (admins); keys are write-only"),
        (name = "usage", description = "Tokens used, by day, agent, principal or model"),
        (name = "openai", description = "OpenAI-compatible routes: agents as models, embeddings; errors in OpenAI's shape"),
        (name = "operations", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as served: the generated one, with every plain string marked NUL-free (a rule
/// the extractors apply to every string, which no field annotation repeats).
///
/// # Panics
/// Never in practice: the generated document always serialises.
#[must_use]
pub fn document() -> serde_json::Value {
    let mut value = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
    crate::http::rules::forbid_nul(&mut value);
    value
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description =
            Some("An access JWT from /v1/auth/login, or an API key (`ak_…`)".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}
