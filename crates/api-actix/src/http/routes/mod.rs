//! Route handlers: extract, call one service method, convert the answer. No business rules here.
//!
//! Routes are registered per resource, so a path that exists answers an unsupported method with
//! 405 and an `Allow` header rather than 404.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod collections;
pub mod conversations;
pub mod documents;
pub mod jobs;
mod lifecycle;
pub mod openai;
pub mod ops;
pub mod providers;
pub mod runs;
pub mod search;
pub mod tenants;
pub mod usage;
pub mod users;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, Resource, web};

use crate::http::error::ApiError;
use crate::http::extract::BodyLimit;
use crate::http::openai::openai_errors;

/// A resource whose unsupported methods answer 405 naming the `allow`ed ones.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::method_not_allowed(allow))
    }))
}

/// Registers `/healthz`, `/readyz` and every `/v1` route. Document uploads may carry bodies up to
/// `documents_limit`, read only once the caller is authenticated; every other route keeps the
/// application's body limit. Both limits are enforced while the body is read (a chunked body is
/// cut off as soon as it passes the limit), never after buffering it.
pub fn configure(cfg: &mut web::ServiceConfig, documents_limit: BodyLimit) {
    let documents_payload = web::PayloadConfig::new(documents_limit.0);
    cfg.service(resource("/healthz", "GET").route(web::get().to(ops::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(ops::readyz)))
        .service(
            web::scope("/v1")
                .service(
                    web::scope("/auth")
                        .service(resource("/login", "POST").route(web::post().to(auth::login)))
                        .service(resource("/refresh", "POST").route(web::post().to(auth::refresh)))
                        .service(resource("/logout", "POST").route(web::post().to(auth::logout)))
                        .service(
                            resource("/logout-all", "POST").route(web::post().to(auth::logout_all)),
                        ),
                )
                .service(
                    web::scope("/me")
                        .service(resource("", "GET").route(web::get().to(auth::me)))
                        .service(
                            resource("/password", "POST")
                                .route(web::post().to(auth::change_password)),
                        ),
                )
                .service(
                    web::scope("/tenants")
                        .service(
                            resource("", "GET, POST")
                                .route(web::post().to(tenants::create))
                                .route(web::get().to(tenants::list)),
                        )
                        .service(
                            resource("/{id}", "PATCH")
                                .route(web::patch().to(tenants::update_settings)),
                        )
                        .service(
                            resource("/{id}/suspend", "POST")
                                .route(web::post().to(tenants::suspend)),
                        )
                        .service(
                            resource("/{id}/resume", "POST").route(web::post().to(tenants::resume)),
                        ),
                )
                .service(resource("/usage", "GET").route(web::get().to(usage::summary)))
                .service(
                    web::scope("/providers")
                        .service(
                            resource("", "GET, POST")
                                .route(web::post().to(providers::create))
                                .route(web::get().to(providers::list)),
                        )
                        .service(
                            resource("/{id}", "GET, PATCH, DELETE")
                                .route(web::get().to(providers::get))
                                .route(web::patch().to(providers::update))
                                .route(web::delete().to(providers::delete)),
                        ),
                )
                .service(
                    resource("/chat/completions", "POST")
                        .wrap(from_fn(openai_errors))
                        .route(web::post().to(openai::chat_completions)),
                )
                .service(
                    resource("/models", "GET")
                        .wrap(from_fn(openai_errors))
                        .route(web::get().to(openai::models)),
                )
                .service(
                    resource("/embeddings", "POST")
                        .wrap(from_fn(openai_errors))
                        .route(web::post().to(openai::embeddings)),
                )
                .service(
                    resource("/tenant", "GET, PATCH")
                        .route(web::get().to(tenants::current))
                        .route(web::patch().to(tenants::rename)),
                )
                .service(
                    web::scope("/users")
                        .service(
                            resource("", "GET, POST")
                                .route(web::post().to(users::create))
                                .route(web::get().to(users::list)),
                        )
                        .service(
                            resource("/{id}", "GET, PATCH, DELETE")
                                .route(web::get().to(users::get))
                                .route(web::patch().to(users::update))
                                .route(web::delete().to(users::delete)),
                        )
                        .service(
                            resource("/{id}/restore", "POST").route(web::post().to(users::restore)),
                        )
                        .service(
                            resource("/{id}/password", "POST")
                                .route(web::post().to(users::reset_password)),
                        )
                        .service(
                            resource("/{id}/purge", "DELETE").route(web::delete().to(users::purge)),
                        ),
                )
                .service(
                    web::scope("/api-keys")
                        .service(
                            resource("", "GET, POST")
                                .route(web::post().to(api_keys::create))
                                .route(web::get().to(api_keys::list)),
                        )
                        .service(
                            resource("/{id}", "DELETE").route(web::delete().to(api_keys::revoke)),
                        ),
                )
                .service(
                    web::scope("/agents")
                        .service(
                            resource("", "GET, POST")
                                .route(web::post().to(agents::create))
                                .route(web::get().to(agents::list)),
                        )
                        .service(
                            resource("/{id}", "GET, PATCH, DELETE")
                                .route(web::get().to(agents::get))
                                .route(web::patch().to(agents::update))
                                .route(web::delete().to(agents::delete)),
                        )
                        .service(
                            resource("/{id}/restore", "POST")
                                .route(web::post().to(agents::restore)),
                        )
                        .service(
                            resource("/{id}/purge", "DELETE")
                                .route(web::delete().to(agents::purge)),
                        )
                        .service(
                            resource("/{id}/conversations", "POST")
                                .route(web::post().to(conversations::create)),
                        ),
                )
                .service(resource("/spaces", "GET").route(web::get().to(collections::spaces)))
                .service(
                    web::scope("/collections")
                        .service(
                            resource("", "GET, POST")
                                .route(web::post().to(collections::create))
                                .route(web::get().to(collections::list)),
                        )
                        .service(
                            resource("/{id}", "GET, PATCH, DELETE")
                                .route(web::get().to(collections::get))
                                .route(web::patch().to(collections::update))
                                .route(web::delete().to(collections::delete)),
                        )
                        .service(
                            resource("/{id}/restore", "POST")
                                .route(web::post().to(collections::restore)),
                        )
                        .service(
                            resource("/{id}/purge", "DELETE")
                                .route(web::delete().to(collections::purge)),
                        )
                        .service(
                            resource("/{id}/reembed", "POST")
                                .route(web::post().to(collections::reembed)),
                        )
                        .service(
                            resource("/{id}/documents", "GET, POST")
                                .app_data(documents_limit)
                                .app_data(documents_payload.clone())
                                .route(web::post().to(documents::upload))
                                .route(web::get().to(documents::list)),
                        )
                        .service(
                            resource("/{id}/search", "POST").route(web::post().to(search::search)),
                        ),
                )
                .service(
                    web::scope("/documents")
                        .service(
                            resource("/{id}", "GET, PUT, DELETE")
                                .app_data(documents_limit)
                                .app_data(documents_payload)
                                .route(web::get().to(documents::get))
                                .route(web::put().to(documents::replace))
                                .route(web::delete().to(documents::delete)),
                        )
                        .service(
                            resource("/{id}/restore", "POST")
                                .route(web::post().to(documents::restore)),
                        )
                        .service(
                            resource("/{id}/purge", "DELETE")
                                .route(web::delete().to(documents::purge)),
                        ),
                )
                .service(
                    web::scope("/jobs")
                        .service(resource("", "GET").route(web::get().to(jobs::jobs)))
                        .service(resource("/{id}", "GET").route(web::get().to(jobs::job)))
                        .service(
                            resource("/{id}/cancel", "POST").route(web::post().to(jobs::cancel)),
                        ),
                )
                .service(resource("/search", "POST").route(web::post().to(search::search_many)))
                .service(resource("/audit", "GET").route(web::get().to(audit::list)))
                .service(
                    web::scope("/conversations")
                        .service(resource("", "GET").route(web::get().to(conversations::list)))
                        .service(
                            resource("/{id}", "GET, PATCH, DELETE")
                                .route(web::get().to(conversations::get))
                                .route(web::patch().to(conversations::rename))
                                .route(web::delete().to(conversations::delete)),
                        )
                        .service(
                            resource("/{id}/restore", "POST")
                                .route(web::post().to(conversations::restore)),
                        )
                        .service(
                            resource("/{id}/purge", "DELETE")
                                .route(web::delete().to(conversations::purge)),
                        )
                        .service(
                            resource("/{id}/messages", "GET, POST")
                                .route(web::get().to(conversations::messages))
                                .route(web::post().to(conversations::post_message)),
                        ),
                )
                .service(
                    web::scope("/messages")
                        .service(
                            resource("/{id}/regenerate", "POST")
                                .route(web::post().to(conversations::regenerate)),
                        )
                        .service(
                            resource("/{id}/feedback", "POST")
                                .route(web::post().to(conversations::feedback)),
                        ),
                )
                .service(
                    web::scope("/runs")
                        .service(resource("/{id}", "GET").route(web::get().to(runs::get)))
                        .service(resource("/{id}/events", "GET").route(web::get().to(runs::events)))
                        .service(
                            resource("/{id}/cancel", "POST").route(web::post().to(runs::cancel)),
                        ),
                ),
        );
}
