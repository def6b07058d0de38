//! Ending sessions: changing one's password (the other sessions end), an admin's reset (all of
//! them end), logging out everywhere. Access tokens are refused from the next request on, refresh
//! tokens for good.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json};

async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"tenant": "acme", "email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn session(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let tokens: Value = json(login(app, email, password).await, StatusCode::OK).await;
    (
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> StatusCode {
    app.request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Tokens carry whole seconds: a session opened right after sessions were ended is opened a
/// second later, so that it is not taken for one of the ended ones.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn changing_ones_password_ends_the_other_sessions_and_keeps_this_one() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    app.user(&acme, "m@acme.test", "member").await;
    let (this_access, this_refresh) = session(&app, "m@acme.test", "member-password-1").await;
    let (other_access, other_refresh) = session(&app, "m@acme.test", "member-password-1").await;

    assert_problem(
        app.post(
            "/v1/me/password",
            &this_access,
            json!({"current_password": "not-the-password", "new_password": "brand-new-password"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let res = app
        .post(
            "/v1/me/password",
            &this_access,
            json!({"current_password": "member-password-1", "new_password": "brand-new-password"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // The other session is over, access and refresh alike; this one goes on.
    assert_eq!(
        app.get("/v1/me", &other_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&app, &other_refresh).await,
        StatusCode::UNAUTHORIZED
    );
    json(app.get("/v1/me", &this_access).await, StatusCode::OK).await;
    assert_eq!(refresh(&app, &this_refresh).await, StatusCode::OK);

    // The old password no longer signs in; the new one does.
    assert_eq!(
        login(&app, "m@acme.test", "member-password-1")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    next_second().await;
    let (access, _) = session(&app, "m@acme.test", "brand-new-password").await;
    json(app.get("/v1/me", &access).await, StatusCode::OK).await;

    // A session cannot be used to guess the password: wrong attempts are limited like logins.
    for _ in 0..5 {
        let res = app
            .post(
                "/v1/me/password",
                &this_access,
                json!({"current_password": "guess-guess", "new_password": "another-password"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_problem(
        app.post(
            "/v1/me/password",
            &this_access,
            json!({"current_password": "brand-new-password", "new_password": "another-password"}),
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;

    // API keys have no password and no session.
    let (_, key) = app.api_key(&acme, &["read", "write", "admin"]).await;
    assert_problem(
        app.post(
            "/v1/me/password",
            &key,
            json!({"current_password": "x", "new_password": "brand-new-password"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post_empty("/v1/auth/logout-all", &key).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn an_admins_reset_ends_every_session_of_the_user() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (member, member_token) = app.user(&acme, "m@acme.test", "member").await;
    let (_, member_refresh) = session(&app, "m@acme.test", "member-password-1").await;
    // Members may not reset others' passwords.
    assert_problem(
        app.post(
            &format!("/v1/users/{}/password", acme.admin_id),
            &member_token,
            json!({"new_password": "taken-over-password"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let res = app
        .post(
            &format!("/v1/users/{member}/password"),
            &acme.admin_token,
            json!({"new_password": "reset-by-the-admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/me", &member_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&app, &member_refresh).await,
        StatusCode::UNAUTHORIZED
    );
    assert_problem(
        app.post(
            &format!("/v1/users/{}/password", uuid::Uuid::new_v4()),
            &acme.admin_token,
            json!({"new_password": "reset-by-the-admin"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    next_second().await;
    let (access, _) = session(&app, "m@acme.test", "reset-by-the-admin").await;
    json(app.get("/v1/me", &access).await, StatusCode::OK).await;
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    app.user(&acme, "m@acme.test", "member").await;
    let (first_access, first_refresh) = session(&app, "m@acme.test", "member-password-1").await;
    let (second_access, second_refresh) = session(&app, "m@acme.test", "member-password-1").await;
    let res = app.post_empty("/v1/auth/logout-all", &first_access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for access in [&first_access, &second_access] {
        assert_eq!(
            app.get("/v1/me", access).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    for refresh_token in [&first_refresh, &second_refresh] {
        assert_eq!(refresh(&app, refresh_token).await, StatusCode::UNAUTHORIZED);
    }
    // Others are untouched.
    json(app.get("/v1/me", &acme.admin_token).await, StatusCode::OK).await;
    next_second().await;
    let (access, _) = session(&app, "m@acme.test", "member-password-1").await;
    json(app.get("/v1/me", &access).await, StatusCode::OK).await;
}
