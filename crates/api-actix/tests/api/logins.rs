//! Password guessing is limited where it comes from, never where it points: an attacker can lock
//! out only itself, and only a trusted proxy decides what address a client has.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{Options, TestApp, assert_problem};

async fn login_from(app: &TestApp, client: &str, password: &str) -> Response {
    app.request(Method::POST, "/v1/auth/login", None)
        .header("x-forwarded-for", client)
        .json(&json!({"tenant": "acme", "email": "admin@acme.test", "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_the_real_user_out() {
    // Behind a proxy on this host, which passes the client's address on.
    let app = TestApp::spawn_with(Options {
        login_attempts: 3,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    for _ in 0..3 {
        let res = login_from(&app, "203.0.113.7", "wrong-password").await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The attacker's address is refused, even with the right password...
    let res = login_from(&app, "203.0.113.7", &acme.admin_password).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // ...the real user, elsewhere, signs in (a little slower while the account is attacked).
    let res = login_from(&app, "198.51.100.20", &acme.admin_password).await;
    assert_eq!(res.status(), StatusCode::OK);
    // An address the client wrote itself, before the proxy's, changes nothing.
    let res = login_from(&app, "198.51.100.20, 203.0.113.7", &acme.admin_password).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn_with(Options {
        login_attempts: 3,
        ..Default::default()
    })
    .await;
    app.tenant("acme").await;
    // Rotating the header does not make a new client.
    for n in 0..3 {
        let res = login_from(&app, &format!("203.0.113.{n}"), "wrong-password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = login_from(&app, "203.0.113.99", "wrong-password").await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}
