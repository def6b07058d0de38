//! Agents: CRUD, soft delete, restore, purge, slugs, lists, and their audit entries.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, json};

#[tokio::test]
async fn create_get_patch_list() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let created = app.agent(t, "support").await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["temperature"], json!(0.7));
    assert_eq!(
        created["model"],
        json!({"provider": "local", "name": "smollm2"})
    );

    let got = json(
        app.get(&format!("/v1/agents/{id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got, created);

    let patched = json(
        app.patch(&format!("/v1/agents/{id}"), t, json!({"description": "helps", "model": {"name": "SmolLM2-135M-Instruct"}, "metadata": {"team": "cx"}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["description"], "helps");
    assert_eq!(
        patched["model"],
        json!({"provider": "local", "name": "SmolLM2-135M-Instruct"})
    );
    assert_eq!(patched["metadata"], json!({"team": "cx"}));
    assert_eq!(patched["slug"], "support");

    for slug in ["billing", "sales", "support-two"] {
        app.agent(t, slug).await;
    }
    let page = json(app.get("/v1/agents?limit=3", t).await, StatusCode::OK).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = json(
        app.get(&format!("/v1/agents?limit=3&cursor={cursor}"), t)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let found = json(app.get("/v1/agents?q=SUPP", t).await, StatusCode::OK).await;
    let slugs: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["support-two", "support"]);
    let none = json(app.get("/v1/agents?q=%25", t).await, StatusCode::OK).await;
    assert!(
        none["items"].as_array().unwrap().is_empty(),
        "LIKE wildcards are matched literally"
    );
}

#[tokio::test]
async fn soft_delete_restore_purge_and_slug_reuse() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let first = app.agent(t, "support").await;
    let id = first["id"].as_str().unwrap().to_owned();

    // Two live agents cannot share a slug.
    let res = app
        .post(
            "/v1/agents",
            t,
            json!({"name": "Dup", "slug": "support", "model": {"provider": "local", "name": "smollm2"}}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "agent_slug_taken").await;

    assert_eq!(
        app.delete(&format!("/v1/agents/{id}"), t).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/v1/agents/{id}"), t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.delete(&format!("/v1/agents/{id}"), t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let list = json(app.get("/v1/agents", t).await, StatusCode::OK).await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "deleted rows leave lists"
    );
    let with_deleted = json(
        app.get("/v1/agents?include_deleted=true", t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(with_deleted["items"][0]["id"], id.as_str());
    assert!(with_deleted["items"][0]["deleted_at"].is_string());
    assert_eq!(
        with_deleted["items"][0]["deleted_by"],
        acme.admin_id.as_str()
    );

    // Members cannot see deleted rows.
    let (_, member) = app.user(&acme, "m@acme.test", "member").await;
    assert_problem(
        app.get("/v1/agents?include_deleted=true", &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // The slug is free again; restoring the old agent into it is a conflict.
    let second = app.agent(t, "support").await;
    assert_problem(
        app.post_empty(&format!("/v1/agents/{id}/restore"), t).await,
        StatusCode::CONFLICT,
        "agent_slug_taken",
    )
    .await;
    let second_id = second["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/v1/agents/{second_id}"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let restored = json(
        app.post_empty(&format!("/v1/agents/{id}/restore"), t).await,
        StatusCode::OK,
    )
    .await;
    assert!(restored["deleted_at"].is_null());
    json(
        app.get(&format!("/v1/agents/{id}"), t).await,
        StatusCode::OK,
    )
    .await;
    // Restoring a live agent changes nothing: the agent as it is.
    let again = json(
        app.post_empty(&format!("/v1/agents/{id}/restore"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again, restored);

    // Purge: admins only, and gone for good.
    assert_problem(
        app.delete(&format!("/v1/agents/{id}/purge"), &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/agents/{id}/purge"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.post_empty(&format!("/v1/agents/{id}/restore"), t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let all = json(
        app.get("/v1/agents?include_deleted=true", t).await,
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second_id]);
}

#[tokio::test]
async fn every_change_is_audited() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let agent = app.agent(t, "support").await;
    let id = agent["id"].as_str().unwrap();
    app.patch(&format!("/v1/agents/{id}"), t, json!({"name": "Renamed"}))
        .await;
    app.delete(&format!("/v1/agents/{id}"), t).await;
    app.post_empty(&format!("/v1/agents/{id}/restore"), t).await;
    app.delete(&format!("/v1/agents/{id}/purge"), t).await;

    let log = json(
        app.get(
            &format!("/v1/audit?resource_type=agent&resource_id={id}"),
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
    for entry in log["items"].as_array().unwrap() {
        assert_eq!(
            entry["principal"],
            json!({"type": "user", "id": acme.admin_id})
        );
    }
    assert_eq!(log["items"][3]["detail"], json!({"fields": ["name"]}));

    // Users, keys and the tenant are audited too; the tenant's creation by the platform key first.
    let (user_id, _) = app.user(&acme, "m@acme.test", "member").await;
    let (key_id, key) = app.api_key(&acme, &["read", "write"]).await;
    app.patch("/v1/tenant", t, json!({"name": "Acme Inc"}))
        .await;
    app.delete(&format!("/v1/api-keys/{key_id}"), t).await;
    let log = json(app.get("/v1/audit?limit=100", t).await, StatusCode::OK).await;
    let seen: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource_type"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("api_key", "revoked"),
        ("tenant", "updated"),
        ("api_key", "created"),
        ("user", "created"),
        ("tenant", "created"),
    ] {
        assert!(
            seen.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {seen:?}"
        );
    }
    let user_entry = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource_id"] == user_id.as_str())
        .unwrap();
    assert_eq!(user_entry["detail"]["role"], "member");
    let last = log["items"].as_array().unwrap().last().unwrap();
    assert_eq!(last["principal"]["type"], "platform_key");

    // Members and API keys without admin cannot read the log.
    let (_, member) = app.user(&acme, "m2@acme.test", "member").await;
    assert_problem(
        app.get("/v1/audit", &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let _ = key;

    // The log is append-only even at the database level.
    let conn = app.platform_connection().await;
    use sea_orm::ConnectionTrait;
    let err = conn
        .execute_unprepared("UPDATE audit_log SET action = 'x'")
        .await;
    assert!(err.is_err(), "updates of the audit log are refused");
}
