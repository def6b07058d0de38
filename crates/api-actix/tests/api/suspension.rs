//! Suspending a tenant cuts off every credential of it at once; resuming lets them in again.
//! Disabling or deleting a user ends its refresh tokens for good.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json};

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

async fn login(app: &TestApp, tenant: &str, email: &str, password: &str) -> Response {
    app.request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"tenant": tenant, "email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_suspended_tenants_tokens_and_keys_are_refused_at_once_until_it_is_resumed() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let (_, key) = app.api_key(&acme, &["read", "write"]).await;
    let platform = &app.platform_key;
    // Used once, so every server has the user and tenant cached as active.
    json(
        app.get("/v1/agents", &acme.admin_token).await,
        StatusCode::OK,
    )
    .await;
    json(app.get("/v1/agents", &key).await, StatusCode::OK).await;

    // Operators list tenants; tenants' own credentials may not.
    let listed = json(app.get("/v1/tenants", platform).await, StatusCode::OK).await;
    let slugs: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert!(
        slugs.contains(&"acme") && slugs.contains(&"other"),
        "{listed}"
    );
    assert_problem(
        app.get("/v1/tenants", &acme.admin_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post_empty(
            &format!("/v1/tenants/{}/suspend", other.id),
            &acme.admin_token,
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post_empty(
            &format!("/v1/tenants/{}/suspend", uuid::Uuid::new_v4()),
            platform,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let suspended = json(
        app.post_empty(&format!("/v1/tenants/{}/suspend", acme.id), platform)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(suspended["status"], "suspended");
    // Every credential of the tenant: the access token, its API key, the refresh token, a login.
    for res in [
        app.get("/v1/agents", &acme.admin_token).await,
        app.get("/v1/me", &acme.admin_token).await,
        app.get("/v1/agents", &key).await,
        refresh(&app, &acme.refresh_token).await,
        login(&app, "acme", &acme.admin_email, &acme.admin_password).await,
    ] {
        assert_problem(res, StatusCode::FORBIDDEN, "tenant_suspended").await;
    }
    // Other tenants carry on.
    json(
        app.get("/v1/agents", &other.admin_token).await,
        StatusCode::OK,
    )
    .await;
    // Suspending again changes nothing.
    json(
        app.post_empty(&format!("/v1/tenants/{}/suspend", acme.id), platform)
            .await,
        StatusCode::OK,
    )
    .await;

    let resumed = json(
        app.post_empty(&format!("/v1/tenants/{}/resume", acme.id), platform)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(resumed["status"], "active");
    json(
        app.get("/v1/agents", &acme.admin_token).await,
        StatusCode::OK,
    )
    .await;
    json(app.get("/v1/agents", &key).await, StatusCode::OK).await;
    json(refresh(&app, &acme.refresh_token).await, StatusCode::OK).await;

    // Both changes are in the tenant's audit log, by the platform key.
    let audit = json(
        app.get("/v1/audit?resource_type=tenant", &acme.admin_token)
            .await,
        StatusCode::OK,
    )
    .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Suspending twice recorded one suspension: the second changed nothing.
    for action in ["suspended", "resumed"] {
        assert_eq!(
            actions.iter().filter(|a| **a == action).count(),
            1,
            "{audit}"
        );
    }
}

#[tokio::test]
async fn re_enabling_or_restoring_a_user_does_not_revive_its_refresh_tokens() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;
    let (member, _) = app.user(&acme, "m@acme.test", "member").await;
    let before: Value = json(
        login(&app, "acme", "m@acme.test", "member-password-1").await,
        StatusCode::OK,
    )
    .await;
    let old_refresh = before["refresh_token"].as_str().unwrap().to_owned();

    // Disabled, then enabled again: the old refresh token stays dead.
    let user = format!("/v1/users/{member}");
    json(
        app.patch(&user, admin, json!({"status": "disabled"})).await,
        StatusCode::OK,
    )
    .await;
    json(
        app.patch(&user, admin, json!({"status": "active"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        refresh(&app, &old_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Deleted, then restored: the same.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second: Value = json(
        login(&app, "acme", "m@acme.test", "member-password-1").await,
        StatusCode::OK,
    )
    .await;
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&user, admin).await.status(),
        StatusCode::NO_CONTENT
    );
    json(
        app.post_empty(&format!("{user}/restore"), admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        refresh(&app, &second_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Signing in again works, and so do the new session's refreshes (tokens carry whole seconds,
    // so the new one is issued a second after the last change).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = json(
        login(&app, "acme", "m@acme.test", "member-password-1").await,
        StatusCode::OK,
    )
    .await;
    json(
        refresh(&app, after["refresh_token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
}
