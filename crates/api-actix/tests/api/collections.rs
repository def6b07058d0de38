//! Collections and embedding spaces: CRUD, the fixed space, soft delete, isolation, audit.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, json};

const MINILM: &str = "local-minilm-l6-v2";

#[tokio::test]
async fn spaces_and_collection_lifecycle() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;

    let spaces = json(app.get("/v1/spaces", t).await, StatusCode::OK).await;
    assert_eq!(
        spaces["items"][0],
        json!({"id": MINILM, "provider": "local", "model": "all-MiniLM-L6-v2", "dimensions": 384})
    );

    let made = json(
        app.post("/v1/collections", t, json!({"name": "Handbook"}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        made["space"]["id"], MINILM,
        "the local space is the default"
    );
    assert_eq!(made["document_count"], 0);
    assert_eq!(made["byte_count"], 0);
    let id = made["id"].as_str().unwrap();

    let res = app
        .post(
            "/v1/collections",
            t,
            json!({"name": "X", "space_id": "no-such-space"}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "space_id");

    let patched = json(
        app.patch(
            &format!("/v1/collections/{id}"),
            t,
            json!({"description": "HR rules"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["description"], "HR rules");
    assert_eq!(patched["name"], "Handbook");
    let res = app
        .patch(
            &format!("/v1/collections/{id}"),
            t,
            json!({"space_id": MINILM}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "space_id");

    let list = json(app.get("/v1/collections", t).await, StatusCode::OK).await;
    assert_eq!(list["items"][0]["id"], id);

    assert_eq!(
        app.delete(&format!("/v1/collections/{id}"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/v1/collections/{id}"), t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let list = json(app.get("/v1/collections", t).await, StatusCode::OK).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let with_deleted = json(
        app.get("/v1/collections?include_deleted=true", t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(with_deleted["items"][0]["id"], id);
    let restored = json(
        app.post_empty(&format!("/v1/collections/{id}/restore"), t)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(restored["deleted_at"].is_null());
    // Restoring a live collection changes nothing, and records nothing.
    let again = json(
        app.post_empty(&format!("/v1/collections/{id}/restore"), t)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["id"], restored["id"]);
    assert!(again["deleted_at"].is_null());

    let (_, member) = app.user(&acme, "m@acme.test", "member").await;
    assert_problem(
        app.delete(&format!("/v1/collections/{id}/purge"), &member)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/collections/{id}/purge"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.post_empty(&format!("/v1/collections/{id}/restore"), t)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let log = json(
        app.get(
            &format!("/v1/audit?resource_type=collection&resource_id={id}"),
            t,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["purged", "restored", "deleted", "updated", "created"]
    );
}

#[tokio::test]
async fn another_tenants_collections_are_not_found() {
    let app = TestApp::spawn().await;
    let a = app.tenant("tenant-a").await;
    let b = app.tenant("tenant-b").await;
    let id = &app.collection(&a.admin_token, "Secret").await;
    let (_, b_key) = app.api_key(&b, &["read", "write", "admin"]).await;
    for token in [b.admin_token.as_str(), b_key.as_str()] {
        assert_problem(
            app.get(&format!("/v1/collections/{id}"), token).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert_problem(
            app.patch(
                &format!("/v1/collections/{id}"),
                token,
                json!({"name": "Mine"}),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert_problem(
            app.delete(&format!("/v1/collections/{id}"), token).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert_problem(
            app.post_empty(&format!("/v1/collections/{id}/restore"), token)
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert_problem(
            app.delete(&format!("/v1/collections/{id}/purge"), token)
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        for path in ["/v1/collections", "/v1/collections?include_deleted=true"] {
            let list = json(app.get(path, token).await, StatusCode::OK).await;
            assert!(
                !list.to_string().contains(id),
                "{path} leaks A's collection"
            );
        }
    }
    let still = json(
        app.get(&format!("/v1/collections/{id}"), &a.admin_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(still["name"], "Secret");
}
