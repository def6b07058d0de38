//! The routes of the shared lifecycle (`domain::services::lifecycle`): soft delete, restore and
//! purge, for every soft-deletable resource. Each resource states its paths, what each step
//! says in the document, and the statuses each answers beyond 200/204.

/// Defines `delete`, `restore` and `purge` handlers calling `state.$service`'s methods of the
/// same names.
macro_rules! lifecycle_routes {
    (
        service: $service:ident,
        id: $id:ty,
        dto: $dto:ty,
        tag: $tag:literal,
        delete: ($delete_path:literal, $delete_doc:literal, [$($delete_status:ident),*]),
        restore: ($restore_path:literal, $restore_doc:literal, [$($restore_status:ident),*]),
        purge: ($purge_path:literal, $purge_doc:literal, [$($purge_status:ident),*]) $(,)?
    ) => {
        #[doc = $delete_doc]
        #[utoipa::path(
            delete, path = $delete_path, tag = $tag,
            params(("id" = uuid::Uuid, Path)),
            responses((status = 204, description = "Deleted"), $($delete_status),*),
            security(("bearer" = []))
        )]
        pub async fn delete(
            state: actix_web::web::Data<$crate::state::AppState>,
            caller: $crate::http::extract::Caller,
            $crate::http::extract::PathId(id): $crate::http::extract::PathId<$id>,
        ) -> $crate::http::error::ApiResult<actix_web::HttpResponse> {
            state.$service.delete(&caller, id).await?;
            Ok(actix_web::HttpResponse::NoContent().finish())
        }

        #[doc = $restore_doc]
        #[utoipa::path(
            post, path = $restore_path, tag = $tag,
            params(("id" = uuid::Uuid, Path)),
            responses((status = 200, description = "Restored", body = $dto), $($restore_status),*),
            security(("bearer" = []))
        )]
        pub async fn restore(
            state: actix_web::web::Data<$crate::state::AppState>,
            caller: $crate::http::extract::Caller,
            $crate::http::extract::PathId(id): $crate::http::extract::PathId<$id>,
        ) -> $crate::http::error::ApiResult<actix_web::web::Json<$dto>> {
            Ok(actix_web::web::Json(
                state.$service.restore(&caller, id).await?.into(),
            ))
        }

        #[doc = $purge_doc]
        #[utoipa::path(
            delete, path = $purge_path, tag = $tag,
            params(("id" = uuid::Uuid, Path)),
            responses((status = 204, description = "Purged"), $($purge_status),*),
            security(("bearer" = []))
        )]
        pub async fn purge(
            state: actix_web::web::Data<$crate::state::AppState>,
            caller: $crate::http::extract::Caller,
            $crate::http::extract::PathId(id): $crate::http::extract::PathId<$id>,
        ) -> $crate::http::error::ApiResult<actix_web::HttpResponse> {
            state.$service.purge(&caller, id).await?;
            Ok(actix_web::HttpResponse::NoContent().finish())
        }
    };
}

pub(crate) use lifecycle_routes;
