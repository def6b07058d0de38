//! Route handlers: extract, call one service method, convert the answer. No business rules here.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod ops;
pub mod tenants;
pub mod users;

use actix_web::web;

/// Registers every `/v1` route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .service(auth::login)
            .service(auth::refresh)
            .service(auth::logout)
            .service(auth::me)
            .service(tenants::create)
            .service(tenants::current)
            .service(tenants::rename)
            .service(users::create)
            .service(users::list)
            .service(users::get)
            .service(users::update)
            .service(users::delete)
            .service(users::restore)
            .service(users::purge)
            .service(api_keys::create)
            .service(api_keys::list)
            .service(api_keys::revoke)
            .service(agents::create)
            .service(agents::list)
            .service(agents::get)
            .service(agents::update)
            .service(agents::delete)
            .service(agents::restore)
            .service(agents::purge)
            .service(audit::list),
    );
}
