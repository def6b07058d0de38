//! Authentication: login, JWT verification, principals that no longer exist or are refused,
//! refresh rotation and reuse detection, logout, signing-key rotation, API keys and their scopes,
//! the login rate limit, and the user rules that guard access (last admin, live emails).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{JWT_KID, Options, TestApp, assert_problem, json};

const ISS: &str = "agentic-platform";
const AUD: &str = "agentic-api";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims of a valid access token for `user` of `tenant`, as the server would issue them.
fn access_claims(tenant: &str, user: &str) -> Value {
    let now = now();
    json!({
        "sub": user,
        "tenant_id": tenant,
        "role": "admin",
        "type": "access",
        "jti": uuid::Uuid::new_v4().to_string(),
        "fam": uuid::Uuid::new_v4().to_string(),
        "iat": now,
        "exp": now + 600,
        "iss": ISS,
        "aud": AUD,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// Signs `claims` through the library with `alg` (an HMAC algorithm), `kid` and `secret`.
fn sign(alg: Algorithm, kid: Option<&str>, secret: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A token with an arbitrary header whose signature is a genuine HMAC-SHA256 over its two parts
/// with `secret`: only the header says something else.
fn with_header(header: &Value, claims: &Value, secret: &str) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// Part `index` (0 = header, 1 = claims) of a JWT, decoded without verification.
fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

/// 401 `unauthenticated` with `WWW-Authenticate: Bearer`.
async fn assert_unauthenticated(res: Response, case: &str) -> Value {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "{case}: WWW-Authenticate"
    );
    let body = assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert!(
        body.get("errors").is_none(),
        "{case}: no field errors in {body}"
    );
    body
}

async fn login_response(app: &TestApp, tenant: &str, email: &str, password: &str) -> Response {
    app.request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"tenant": tenant, "email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn refresh_response(app: &TestApp, refresh_token: &str) -> Response {
    app.request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .unwrap()
}

async fn get_with_authorization(app: &TestApp, path: &str, authorization: &str) -> Response {
    app.request(Method::GET, path, None)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {value}"))
}

// ---------------------------------------------------------------------------------------------
// Login and /v1/me
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_answers_tokens_and_user_and_me_answers_user_and_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;

    let res = login_response(&app, "acme", &acme.admin_email, &acme.admin_password).await;
    let tokens = json(res, StatusCode::OK).await;
    let access = str_of(&tokens, "access_token");
    let refresh = str_of(&tokens, "refresh_token");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["user"]["id"], acme.admin_id.as_str());
    assert_eq!(tokens["user"]["email"], acme.admin_email.as_str());
    assert_eq!(tokens["user"]["role"], "admin");
    assert_eq!(tokens["user"]["status"], "active");
    assert_eq!(tokens["user"]["tenant_id"], acme.id.as_str());
    let text = tokens.to_string();
    assert!(
        !text.contains("password") && !text.contains(&acme.admin_password),
        "no password or hash in {text}"
    );

    // The tokens are what the contract says they are.
    let header = jwt_part(access, 0);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], JWT_KID);
    let claims = jwt_part(access, 1);
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["sub"], acme.admin_id.as_str());
    assert_eq!(claims["tenant_id"], acme.id.as_str());
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["aud"], AUD);
    assert!(claims["jti"].is_string());
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 900);
    let refresh_claims = jwt_part(refresh, 1);
    assert_eq!(refresh_claims["type"], "refresh");
    assert_eq!(refresh_claims["fam"], claims["fam"], "one family per login");
    assert_ne!(refresh_claims["jti"], claims["jti"]);

    let me = json(app.get("/v1/me", access).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], acme.admin_id.as_str());
    assert_eq!(me["user"]["email"], acme.admin_email.as_str());
    assert_eq!(me["tenant"]["id"], acme.id.as_str());
    assert_eq!(me["tenant"]["slug"], "acme");
    assert!(me.get("api_key").is_none(), "a user is no API key: {me}");

    // Emails are case-insensitive.
    let res = login_response(&app, "acme", "ADMIN@Acme.Test", &acme.admin_password).await;
    let upper = json(res, StatusCode::OK).await;
    assert_eq!(upper["user"]["id"], acme.admin_id.as_str());
}

#[tokio::test]
async fn login_failures_answer_alike_whichever_part_was_wrong() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    app.tenant("globex").await;

    let mut details = Vec::new();
    for (case, tenant, email, password) in [
        (
            "wrong password",
            "acme",
            acme.admin_email.as_str(),
            "wrong-password-1",
        ),
        (
            "unknown email",
            "acme",
            "nobody@acme.test",
            acme.admin_password.as_str(),
        ),
        (
            "unknown tenant",
            "initech",
            acme.admin_email.as_str(),
            acme.admin_password.as_str(),
        ),
        (
            "another tenant's admin",
            "globex",
            acme.admin_email.as_str(),
            acme.admin_password.as_str(),
        ),
        (
            "malformed tenant",
            "Not A Slug",
            acme.admin_email.as_str(),
            acme.admin_password.as_str(),
        ),
        (
            "malformed email",
            "acme",
            "not-an-email",
            acme.admin_password.as_str(),
        ),
    ] {
        let res = login_response(&app, tenant, email, password).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{case}"
        );
        let body = assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        let detail = str_of(&body, "detail").to_owned();
        assert!(!detail.is_empty(), "{case}");
        details.push((case, detail, body["title"].clone(), body["type"].clone()));
    }
    let (_, first_detail, first_title, first_type) = details[0].clone();
    for (case, detail, title, kind) in &details {
        assert_eq!(*detail, first_detail, "{case}: same detail");
        assert_eq!(*title, first_title, "{case}: same title");
        assert_eq!(*kind, first_type, "{case}: same type");
    }
}

// ---------------------------------------------------------------------------------------------
// JWT verification
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_invalid_jwt_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let secret = app.jwt_secret.clone();
    let valid = || access_claims(&acme.id, &acme.admin_id);

    // The forged tokens below differ from this accepted one only in what each case names.
    let control = sign(Algorithm::HS256, Some(JWT_KID), &secret, &valid());
    json(app.get("/v1/agents", &control).await, StatusCode::OK).await;
    let hs256_header = json!({"alg": "HS256", "typ": "JWT", "kid": JWT_KID});
    let hand_made = with_header(&hs256_header, &valid(), &secret);
    json(app.get("/v1/agents", &hand_made).await, StatusCode::OK).await;

    let other_secret = format!("another-secret-{}", uuid::Uuid::new_v4().simple());
    let tampered = {
        let parts: Vec<&str> = control.split('.').collect();
        let claims = with(valid(), "role", json!("member"));
        format!("{}.{}.{}", parts[0], b64(&claims), parts[2])
    };
    let none_header = json!({"alg": "none", "typ": "JWT", "kid": JWT_KID});
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none, no signature",
            format!("{}.{}.", b64(&none_header), b64(&valid())),
        ),
        (
            "alg none, with a valid HMAC signature",
            with_header(&none_header, &valid(), &secret),
        ),
        (
            "alg None",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "None", "typ": "JWT", "kid": JWT_KID})),
                b64(&valid())
            ),
        ),
        (
            "RS256 header, HMAC signature with the server secret",
            with_header(
                &json!({"alg": "RS256", "typ": "JWT", "kid": JWT_KID}),
                &valid(),
                &secret,
            ),
        ),
        (
            "HS512 with the server secret",
            sign(Algorithm::HS512, Some(JWT_KID), &secret, &valid()),
        ),
        (
            "HS384 with the server secret",
            sign(Algorithm::HS384, Some(JWT_KID), &secret, &valid()),
        ),
        (
            "bad signature (another secret, same kid)",
            sign(Algorithm::HS256, Some(JWT_KID), &other_secret, &valid()),
        ),
        ("tampered claims", tampered),
        (
            "signature stripped",
            format!("{}.{}.", b64(&hs256_header), b64(&valid())),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(
                    with(valid(), "exp", json!(now() - 60)),
                    "iat",
                    json!(now() - 960),
                ),
            ),
        ),
        (
            "expiring this very second",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "exp", json!(now())),
            ),
        ),
        (
            "missing exp",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &without(valid(), "exp"),
            ),
        ),
        (
            "exp not a number",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "exp", json!("tomorrow")),
            ),
        ),
        (
            "wrong iss",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "iss", json!("someone-else")),
            ),
        ),
        (
            "missing iss",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &without(valid(), "iss"),
            ),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "aud", json!("another-api")),
            ),
        ),
        (
            "aud as a list with ours and another",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "aud", json!([AUD, "another-api"])),
            ),
        ),
        (
            "missing aud",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &without(valid(), "aud"),
            ),
        ),
        (
            "unknown kid",
            sign(Algorithm::HS256, Some("k9"), &secret, &valid()),
        ),
        ("no kid", sign(Algorithm::HS256, None, &secret, &valid())),
        (
            "unknown type",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "type", json!("id")),
            ),
        ),
        (
            "missing type",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &without(valid(), "type"),
            ),
        ),
        (
            "sub not a uuid",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "sub", json!("root")),
            ),
        ),
        (
            "crafted refresh token",
            sign(
                Algorithm::HS256,
                Some(JWT_KID),
                &secret,
                &with(valid(), "type", json!("refresh")),
            ),
        ),
        ("refresh token used as access", acme.refresh_token.clone()),
        ("garbage", "not-a-jwt".to_owned()),
        ("three garbage parts", "a.b.c".to_owned()),
        ("a random uuid", uuid::Uuid::new_v4().to_string()),
        (
            "a fourth part",
            format!("{control}.{}", control.split('.').nth(2).unwrap()),
        ),
        (
            "a crit header",
            with_header(
                &json!({"alg": "HS256", "typ": "JWT", "kid": JWT_KID, "crit": ["exp"]}),
                &valid(),
                &secret,
            ),
        ),
    ];
    for (case, token) in &cases {
        assert_unauthenticated(app.get("/v1/agents", token).await, case).await;
    }

    // Credentials that are not a bearer token at all.
    let res = app
        .request(Method::GET, "/v1/agents", None)
        .send()
        .await
        .unwrap();
    assert_unauthenticated(res, "no Authorization header").await;
    for (case, authorization) in [
        ("Basic scheme", "Basic YWRtaW46cGFzc3dvcmQ=".to_owned()),
        ("Token scheme with a valid JWT", format!("Token {control}")),
        ("the JWT without a scheme", control.clone()),
        ("Bearer without a token", "Bearer ".to_owned()),
        ("Bearer alone", "Bearer".to_owned()),
    ] {
        assert_unauthenticated(
            get_with_authorization(&app, "/v1/agents", &authorization).await,
            case,
        )
        .await;
    }

    // The valid token still works: nothing above was refused for an unrelated reason.
    json(app.get("/v1/agents", &control).await, StatusCode::OK).await;
    json(
        get_with_authorization(&app, "/v1/agents", &format!("bearer {control}")).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_token_whose_user_is_not_of_its_tenant_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let secret = app.jwt_secret.clone();

    // Control: correctly paired claims are accepted.
    let own = sign(
        Algorithm::HS256,
        Some(JWT_KID),
        &secret,
        &access_claims(&globex.id, &globex.admin_id),
    );
    let me = json(app.get("/v1/me", &own).await, StatusCode::OK).await;
    assert_eq!(me["tenant"]["id"], globex.id.as_str());

    // Tenant A's id with tenant B's admin.
    let mixed = sign(
        Algorithm::HS256,
        Some(JWT_KID),
        &secret,
        &access_claims(&acme.id, &globex.admin_id),
    );
    assert_unauthenticated(app.get("/v1/agents", &mixed).await, "mixed tenant/user").await;
    assert_unauthenticated(app.get("/v1/me", &mixed).await, "mixed tenant/user on me").await;

    // A user or tenant that does not exist at all.
    let nobody = uuid::Uuid::new_v4().to_string();
    for (case, claims) in [
        ("unknown user", access_claims(&acme.id, &nobody)),
        ("unknown tenant", access_claims(&nobody, &acme.admin_id)),
    ] {
        let token = sign(Algorithm::HS256, Some(JWT_KID), &secret, &claims);
        assert_unauthenticated(app.get("/v1/agents", &token).await, case).await;
    }
}

#[tokio::test]
async fn disabled_and_deleted_users_are_forbidden_even_with_unexpired_tokens() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;

    // A member, signed in with both tokens.
    let res = app
        .post(
            "/v1/users",
            admin,
            json!({"email": "m@acme.test", "password": "member-password-1", "role": "member"}),
        )
        .await;
    let member = json(res, StatusCode::CREATED).await;
    let member_id = str_of(&member, "id").to_owned();
    let tokens = app.login("acme", "m@acme.test", "member-password-1").await;
    let access = str_of(&tokens, "access_token").to_owned();
    let refresh = str_of(&tokens, "refresh_token").to_owned();
    json(app.get("/v1/agents", &access).await, StatusCode::OK).await;

    let patched = json(
        app.patch(
            &format!("/v1/users/{member_id}"),
            admin,
            json!({"status": "disabled"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["status"], "disabled");
    assert_problem(
        app.get("/v1/agents", &access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get("/v1/me", &access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        refresh_response(&app, &refresh).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        login_response(&app, "acme", "m@acme.test", "member-password-1").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // A wrong password still says nothing about the account's state.
    assert_problem(
        login_response(&app, "acme", "m@acme.test", "wrong-password-1").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // Enabled again, the same token is accepted: the state is read at every request.
    json(
        app.patch(
            &format!("/v1/users/{member_id}"),
            admin,
            json!({"status": "active"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    json(app.get("/v1/agents", &access).await, StatusCode::OK).await;

    // A soft-deleted user is refused as well.
    assert_eq!(
        app.delete(&format!("/v1/users/{member_id}"), admin)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get("/v1/agents", &access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get("/v1/me", &access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // A deleted user has no credentials any more.
    assert_problem(
        login_response(&app, "acme", "m@acme.test", "member-password-1").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // A disabled admin (not the last one) is refused too.
    let (admin2_id, admin2_token) = app.user(&acme, "second@acme.test", "admin").await;
    json(app.get("/v1/users", &admin2_token).await, StatusCode::OK).await;
    json(
        app.patch(
            &format!("/v1/users/{admin2_id}"),
            admin,
            json!({"status": "disabled"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_problem(
        app.get("/v1/users", &admin2_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // Purged: the user is gone, so the token names nobody.
    assert_eq!(
        app.delete(&format!("/v1/users/{member_id}/purge"), admin)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_unauthenticated(app.get("/v1/agents", &access).await, "purged user").await;
}

// ---------------------------------------------------------------------------------------------
// Refresh and logout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let other_session = app
        .login("acme", &acme.admin_email, &acme.admin_password)
        .await;

    let rotated = json(
        refresh_response(&app, &acme.refresh_token).await,
        StatusCode::OK,
    )
    .await;
    let access = str_of(&rotated, "access_token").to_owned();
    let refresh = str_of(&rotated, "refresh_token").to_owned();
    assert_eq!(rotated["token_type"], "bearer");
    assert_eq!(rotated["expires_in"], 900);
    assert_eq!(rotated["user"]["id"], acme.admin_id.as_str());
    assert_ne!(refresh, acme.refresh_token);
    assert_ne!(access, acme.admin_token);
    assert_eq!(
        jwt_part(&refresh, 1)["fam"],
        jwt_part(&acme.refresh_token, 1)["fam"],
        "rotation stays in the family"
    );
    let me = json(app.get("/v1/me", &access).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], acme.admin_id.as_str());

    // The old refresh token again: refused, and the whole family dies with it.
    assert_unauthenticated(
        refresh_response(&app, &acme.refresh_token).await,
        "rotated refresh token presented again",
    )
    .await;
    assert_unauthenticated(
        refresh_response(&app, &refresh).await,
        "newest refresh token of a revoked family",
    )
    .await;
    assert_unauthenticated(
        app.get("/v1/agents", &access).await,
        "access token of a revoked family",
    )
    .await;
    assert_unauthenticated(
        app.get("/v1/agents", &acme.admin_token).await,
        "first access token of a revoked family",
    )
    .await;

    // Another session of the same user is untouched.
    let other_access = str_of(&other_session, "access_token");
    json(app.get("/v1/agents", other_access).await, StatusCode::OK).await;
    let next = json(
        refresh_response(&app, str_of(&other_session, "refresh_token")).await,
        StatusCode::OK,
    )
    .await;
    let next_refresh = str_of(&next, "refresh_token");

    // An access token is no refresh token.
    assert_unauthenticated(
        refresh_response(&app, str_of(&next, "access_token")).await,
        "access token used as refresh token",
    )
    .await;
    assert_unauthenticated(refresh_response(&app, "garbage").await, "garbage").await;
    let forged = sign(
        Algorithm::HS256,
        Some(JWT_KID),
        &format!("another-secret-{}", uuid::Uuid::new_v4().simple()),
        &with(
            access_claims(&acme.id, &acme.admin_id),
            "type",
            json!("refresh"),
        ),
    );
    assert_unauthenticated(refresh_response(&app, &forged).await, "forged refresh").await;
    let now = now();
    let refresh_claims = jwt_part(next_refresh, 1);
    let expired = sign(
        Algorithm::HS256,
        Some(JWT_KID),
        &app.jwt_secret,
        &with(
            with(refresh_claims.clone(), "exp", json!(now - 60)),
            "iat",
            json!(now - 3660),
        ),
    );
    assert_unauthenticated(
        refresh_response(&app, &expired).await,
        "expired refresh token",
    )
    .await;
    // Validly signed, but of a family this server never opened.
    let never_issued = sign(
        Algorithm::HS256,
        Some(JWT_KID),
        &app.jwt_secret,
        &with(
            access_claims(&acme.id, &acme.admin_id),
            "type",
            json!("refresh"),
        ),
    );
    assert_unauthenticated(
        refresh_response(&app, &never_issued).await,
        "refresh token of an unknown family",
    )
    .await;
    let res = app
        .request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // Refusing an access token as refresh token did not harm its family.
    json(refresh_response(&app, next_refresh).await, StatusCode::OK).await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let app = TestApp::spawn_with(Options {
        login_attempts: 20,
        ..Options::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    for round in 0..5 {
        let tokens = app
            .login("acme", &acme.admin_email, &acme.admin_password)
            .await;
        let refresh = str_of(&tokens, "refresh_token");
        let (a, b) = tokio::join!(
            refresh_response(&app, refresh),
            refresh_response(&app, refresh)
        );
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::UNAUTHORIZED],
            "round {round}: one rotation wins, the other is a reuse"
        );
    }
}

#[tokio::test]
async fn access_tokens_expire_at_their_exp() {
    let app = TestApp::spawn_with(Options {
        access_ttl_secs: 1,
        ..Options::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    assert_eq!(
        jwt_part(&acme.admin_token, 1)["exp"].as_i64().unwrap()
            - jwt_part(&acme.admin_token, 1)["iat"].as_i64().unwrap(),
        1
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_unauthenticated(
        app.get("/v1/agents", &acme.admin_token).await,
        "expired access token",
    )
    .await;
    // The refresh token outlives it and brings a fresh one.
    let fresh = json(
        refresh_response(&app, &acme.refresh_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(fresh["expires_in"], 1);
    json(
        app.get("/v1/agents", str_of(&fresh, "access_token")).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn logout_revokes_the_session_and_leaves_other_sessions_alone() {
    // Every login counts against the per-email limit; this test signs in more often than 5 times.
    let app = TestApp::spawn_with(Options {
        login_attempts: 20,
        ..Options::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let login = || app.login("acme", &acme.admin_email, &acme.admin_password);
    let b = login().await;
    let c = login().await;
    let d = login().await;
    let e = login().await;
    let tok = |s: &Value, k: &str| str_of(s, k).to_owned();

    // Without a body: the access token and its family.
    let res = app.post_empty("/v1/auth/logout", &acme.admin_token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_unauthenticated(
        app.get("/v1/agents", &acme.admin_token).await,
        "access token after logout",
    )
    .await;
    assert_unauthenticated(
        refresh_response(&app, &acme.refresh_token).await,
        "refresh token after logout",
    )
    .await;
    assert_unauthenticated(
        app.post_empty("/v1/auth/logout", &acme.admin_token).await,
        "logging out twice",
    )
    .await;
    json(
        app.get("/v1/agents", &tok(&b, "access_token")).await,
        StatusCode::OK,
    )
    .await;

    // With a body: B's session and C's family (named by its refresh token).
    let res = app
        .post(
            "/v1/auth/logout",
            &tok(&b, "access_token"),
            json!({"refresh_token": tok(&c, "refresh_token")}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_unauthenticated(
        app.get("/v1/agents", &tok(&b, "access_token")).await,
        "B access",
    )
    .await;
    assert_unauthenticated(
        refresh_response(&app, &tok(&b, "refresh_token")).await,
        "B refresh",
    )
    .await;
    assert_unauthenticated(
        refresh_response(&app, &tok(&c, "refresh_token")).await,
        "C refresh",
    )
    .await;
    assert_unauthenticated(
        app.get("/v1/agents", &tok(&c, "access_token")).await,
        "C access (same family as C refresh)",
    )
    .await;

    // With `{}`: like no body.
    let res = app
        .post("/v1/auth/logout", &tok(&d, "access_token"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_unauthenticated(
        app.get("/v1/agents", &tok(&d, "access_token")).await,
        "D access",
    )
    .await;

    // Another user's refresh token in the body is ignored, not revoked.
    let res = app
        .post(
            "/v1/users",
            &tok(&e, "access_token"),
            json!({"email": "m@acme.test", "password": "member-password-1", "role": "member"}),
        )
        .await;
    json(res, StatusCode::CREATED).await;
    let member = app.login("acme", "m@acme.test", "member-password-1").await;
    let res = app
        .post(
            "/v1/auth/logout",
            &tok(&e, "access_token"),
            json!({"refresh_token": tok(&member, "refresh_token")}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    json(
        app.get("/v1/agents", &tok(&member, "access_token")).await,
        StatusCode::OK,
    )
    .await;
    json(
        refresh_response(&app, &tok(&member, "refresh_token")).await,
        StatusCode::OK,
    )
    .await;

    // A new login of the logged-out user works.
    let f = login().await;
    json(
        app.get("/v1/agents", &tok(&f, "access_token")).await,
        StatusCode::OK,
    )
    .await;

    // API keys do not log out.
    let created = json(
        app.post(
            "/v1/api-keys",
            &tok(&f, "access_token"),
            json!({"name": "ci", "scopes": ["read"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_problem(
        app.post_empty("/v1/auth/logout", str_of(&created, "key"))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_unauthenticated(
        app.post_empty("/v1/auth/logout", "not-a-token").await,
        "logout without valid credentials",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Signing key rotation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn signing_keys_rotate_by_kid() {
    let s1 = format!("k1-secret-{}", uuid::Uuid::new_v4().simple());
    let s2 = format!("k2-secret-{}", uuid::Uuid::new_v4().simple());
    assert!(s1.len() >= 32 && s2.len() >= 32);
    let app1 = TestApp::spawn_with(Options {
        jwt_kid: "k1".into(),
        jwt_secret: s1.clone(),
        ..Options::default()
    })
    .await;
    let acme = app1.tenant("acme").await;
    let k1_access = acme.admin_token.clone();
    assert_eq!(jwt_part(&k1_access, 0)["kid"], "k1");
    json(app1.get("/v1/agents", &k1_access).await, StatusCode::OK).await;

    // The new key signs; the old one still verifies.
    let app2 = app1
        .sibling(Options {
            jwt_kid: "k2".into(),
            jwt_secret: s2.clone(),
            previous_keys: Some(format!("k1={s1}")),
            ..Options::default()
        })
        .await;
    json(app2.get("/v1/agents", &k1_access).await, StatusCode::OK).await;
    let fresh = app2
        .login("acme", &acme.admin_email, &acme.admin_password)
        .await;
    let k2_access = str_of(&fresh, "access_token").to_owned();
    assert_eq!(jwt_part(&k2_access, 0)["kid"], "k2");
    assert_eq!(jwt_part(str_of(&fresh, "refresh_token"), 0)["kid"], "k2");
    json(app2.get("/v1/agents", &k2_access).await, StatusCode::OK).await;
    // A k1 refresh token is exchanged for k2 tokens.
    let rotated = json(
        refresh_response(&app2, &acme.refresh_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(jwt_part(str_of(&rotated, "access_token"), 0)["kid"], "k2");
    json(
        app2.get("/v1/agents", str_of(&rotated, "access_token"))
            .await,
        StatusCode::OK,
    )
    .await;
    // The old server does not know k2.
    assert_unauthenticated(app1.get("/v1/agents", &k2_access).await, "k2 token on app1").await;
    // The kid selects the key: the old secret under the new kid is a bad signature.
    let mismatched = sign(
        Algorithm::HS256,
        Some("k2"),
        &s1,
        &access_claims(&acme.id, &acme.admin_id),
    );
    assert_unauthenticated(
        app2.get("/v1/agents", &mismatched).await,
        "k1 secret, k2 kid",
    )
    .await;
    let matched = sign(
        Algorithm::HS256,
        Some("k1"),
        &s1,
        &access_claims(&acme.id, &acme.admin_id),
    );
    json(app2.get("/v1/agents", &matched).await, StatusCode::OK).await;

    // Once the old key is retired, its tokens die.
    let app3 = app1
        .sibling(Options {
            jwt_kid: "k2".into(),
            jwt_secret: s2.clone(),
            previous_keys: None,
            ..Options::default()
        })
        .await;
    assert_unauthenticated(app3.get("/v1/agents", &k1_access).await, "k1 token on app3").await;
    assert_unauthenticated(
        app3.get("/v1/agents", &matched).await,
        "crafted k1 token on app3",
    )
    .await;
    json(app3.get("/v1/agents", &k2_access).await, StatusCode::OK).await;
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_are_shown_once_and_identify_themselves() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;

    let created = json(
        app.post(
            "/v1/api-keys",
            admin,
            json!({"name": "ci", "scopes": ["read"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = str_of(&created, "id").to_owned();
    let key = str_of(&created, "key").to_owned();
    assert!(key.starts_with("ak_"), "{key}");
    assert!(key.len() > 20, "a key long enough to be unguessable: {key}");
    let prefix = str_of(&created, "prefix");
    assert!(
        key.starts_with(prefix) && prefix.len() < key.len(),
        "prefix {prefix} of {key}"
    );
    assert_eq!(created["name"], "ci");
    assert_eq!(created["scopes"], json!(["read"]));
    assert!(created["expires_at"].is_null());
    assert!(created["revoked_at"].is_null());
    assert!(created["last_used_at"].is_null());
    assert_eq!(created["created_by"], acme.admin_id.as_str());

    // The list never shows the key again.
    let list = json(app.get("/v1/api-keys", admin).await, StatusCode::OK).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert!(
        items[0].get("key").is_none(),
        "no key field in {}",
        items[0]
    );
    assert!(
        !list.to_string().contains(&key),
        "the plaintext appears nowhere in the list"
    );
    assert!(items[0]["last_used_at"].is_null(), "not used yet");

    // Stored hashed: the plaintext appears nowhere in its row (the prefix does, which shows the
    // query looks where it should).
    let db = app.platform_connection().await;
    let containing = |needle: &str| {
        format!(
            "UPDATE api_keys k SET name = k.name WHERE k.id = '{id}' AND \
             (strpos(k::text, '{needle}') > 0 \
              OR strpos(encode(k.key_hash, 'hex'), encode(convert_to('{needle}', 'UTF8'), 'hex')) > 0)"
        )
    };
    let found = db.execute_unprepared(&containing(prefix)).await.unwrap();
    assert_eq!(found.rows_affected(), 1, "the prefix is stored");
    let found = db.execute_unprepared(&containing(&key)).await.unwrap();
    assert_eq!(found.rows_affected(), 0, "the key itself is not stored");

    // The key authenticates as itself.
    let me = json(app.get("/v1/me", &key).await, StatusCode::OK).await;
    assert_eq!(me["api_key"]["id"], id.as_str());
    assert_eq!(me["api_key"]["scopes"], json!(["read"]));
    assert_eq!(me["tenant"]["id"], acme.id.as_str());
    assert!(me.get("user").is_none(), "an API key is no user: {me}");

    let list = json(app.get("/v1/api-keys", admin).await, StatusCode::OK).await;
    assert!(
        list["items"][0]["last_used_at"].is_string(),
        "last_used_at is set after use: {list}"
    );
}

#[tokio::test]
async fn api_key_scopes_are_enforced() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;
    let model = json!({"provider": "local", "name": "smollm2"});

    // read: may read, may not write.
    let (_, read) = app.api_key(&acme, &["read"]).await;
    json(app.get("/v1/agents", &read).await, StatusCode::OK).await;
    assert_problem(
        app.post(
            "/v1/agents",
            &read,
            json!({"name": "R", "slug": "r", "model": model}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // write: may create, may not purge nor administer.
    let (_, write) = app.api_key(&acme, &["write"]).await;
    let agent = json(
        app.post(
            "/v1/agents",
            &write,
            json!({"name": "W", "slug": "w", "model": model}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let agent_id = str_of(&agent, "id").to_owned();
    assert_problem(
        app.delete(&format!("/v1/agents/{agent_id}/purge"), &write)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for path in ["/v1/users", "/v1/api-keys", "/v1/audit"] {
        let res = app.get(path, &write).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_problem(
        app.post(
            "/v1/api-keys",
            &write,
            json!({"name": "escalate", "scopes": ["admin"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post(
            "/v1/users",
            &write,
            json!({"email": "x@acme.test", "password": "member-password-1", "role": "admin"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // The agent is still there: the refused purge changed nothing.
    json(
        app.get(&format!("/v1/agents/{agent_id}"), admin).await,
        StatusCode::OK,
    )
    .await;

    // admin: may administer.
    let (_, admin_key) = app.api_key(&acme, &["admin"]).await;
    let users = json(app.get("/v1/users", &admin_key).await, StatusCode::OK).await;
    assert_eq!(users["items"][0]["id"], acme.admin_id.as_str());
    assert_eq!(
        app.delete(&format!("/v1/agents/{agent_id}/purge"), &admin_key)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/v1/agents/{agent_id}"), admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // A member user cannot create or list API keys.
    let (_, member) = app.user(&acme, "m@acme.test", "member").await;
    assert_problem(
        app.post(
            "/v1/api-keys",
            &member,
            json!({"name": "mine", "scopes": ["read"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get("/v1/api-keys", &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let keys = json(app.get("/v1/api-keys", admin).await, StatusCode::OK).await;
    assert_eq!(
        keys["items"].as_array().unwrap().len(),
        3,
        "no key was made by a refused request"
    );
}

#[tokio::test]
async fn revoked_expired_and_unknown_api_keys_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;

    // Revoked: refused at once.
    let (id, key) = app.api_key(&acme, &["read"]).await;
    json(app.get("/v1/agents", &key).await, StatusCode::OK).await;
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{id}"), admin)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_unauthenticated(app.get("/v1/agents", &key).await, "revoked key").await;
    assert_unauthenticated(app.get("/v1/me", &key).await, "revoked key on me").await;
    let list = json(app.get("/v1/api-keys", admin).await, StatusCode::OK).await;
    let revoked = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("a revoked key is still listed");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_problem(
        app.delete(&format!("/v1/api-keys/{}", uuid::Uuid::new_v4()), admin)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Expired: refused from its expiry on, whether the server has it cached or reads it.
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = json(
        app.post(
            "/v1/api-keys",
            admin,
            json!({"name": "brief", "scopes": ["read"], "expires_at": soon.to_rfc3339()}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let brief = str_of(&created, "key");
    json(app.get("/v1/agents", brief).await, StatusCode::OK).await;
    let left = soon - chrono::Utc::now() + chrono::Duration::milliseconds(100);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    assert_unauthenticated(app.get("/v1/agents", brief).await, "expired cached key").await;
    let (id, key) = app.api_key(&acme, &["read"]).await;
    let db = app.platform_connection().await;
    let done = db
        .execute_unprepared(&format!(
            "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    assert_unauthenticated(app.get("/v1/agents", &key).await, "expired key").await;

    // A key with a future expiry works until then.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let created = json(
        app.post(
            "/v1/api-keys",
            admin,
            json!({"name": "short-lived", "scopes": ["read"], "expires_at": future}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert!(created["expires_at"].is_string());
    json(
        app.get("/v1/agents", str_of(&created, "key")).await,
        StatusCode::OK,
    )
    .await;

    // Made up, or mangled.
    let made_up = format!("ak_{}", uuid::Uuid::new_v4().simple());
    assert_unauthenticated(app.get("/v1/agents", &made_up).await, "made-up key").await;
    let live = str_of(&created, "key");
    let mangled = format!("{}x", &live[..live.len() - 1]);
    assert_unauthenticated(app.get("/v1/agents", &mangled).await, "mangled key").await;
    assert_unauthenticated(app.get("/v1/agents", "ak_").await, "bare prefix").await;
}

#[tokio::test]
async fn api_key_creation_is_validated() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();

    for (case, body, field) in [
        (
            "expiry in the past",
            json!({"name": "old", "scopes": ["read"], "expires_at": past}),
            "expires_at",
        ),
        (
            "unknown scope",
            json!({"name": "root", "scopes": ["read", "root"]}),
            "scopes",
        ),
        ("no scope", json!({"name": "none", "scopes": []}), "scopes"),
    ] {
        let res = app.post("/v1/api-keys", admin, body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{case}");
        let problem =
            assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{case}");
    }
    let list = json(app.get("/v1/api-keys", admin).await, StatusCode::OK).await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "no key was created"
    );
}

// ---------------------------------------------------------------------------------------------
// Login rate limit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_attempts_are_rate_limited_per_email() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    // A user who has not signed in yet, so every attempt below is counted from zero.
    let res = app
        .post(
            "/v1/users",
            &acme.admin_token,
            json!({"email": "m@acme.test", "password": "member-password-1", "role": "member"}),
        )
        .await;
    json(res, StatusCode::CREATED).await;

    // Spelling the email differently does not make a fresh budget.
    let spellings = [
        "m@acme.test",
        "M@acme.test",
        "m@ACME.TEST",
        " m@acme.test",
        "M@Acme.Test",
    ];
    for (attempt, email) in spellings.iter().enumerate() {
        let res = login_response(&app, "acme", email, "wrong-password-1").await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt} ({email})"
        );
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    for case in ["6th attempt, wrong password", "7th attempt, right password"] {
        let password = if case.contains("right") {
            "member-password-1"
        } else {
            "wrong-password-1"
        };
        let res = login_response(&app, "acme", "m@acme.test", password).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{case}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{case}: {name} header"))
                .to_owned()
        };
        let retry_after: u64 = header("retry-after").parse().expect("Retry-After secs");
        assert!((1..=300).contains(&retry_after), "{case}: {retry_after}");
        assert_eq!(header("ratelimit-limit"), "5", "{case}");
        assert_eq!(header("ratelimit-remaining"), "0", "{case}");
        let reset: u64 = header("ratelimit-reset").parse().expect("RateLimit-Reset");
        assert!((1..=300).contains(&reset), "{case}: {reset}");
        assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }

    // Another email of the same tenant is not limited.
    let tokens = app
        .login("acme", &acme.admin_email, &acme.admin_password)
        .await;
    assert!(tokens["access_token"].is_string());
    let res = login_response(&app, "acme", &acme.admin_email, "wrong-password-1").await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Nor is a third user, signing in for the first time.
    let (_, other) = app.user(&acme, "other@acme.test", "member").await;
    json(app.get("/v1/agents", &other).await, StatusCode::OK).await;
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;
    let me = format!("/v1/users/{}", acme.admin_id);

    for (case, body) in [
        ("demote", json!({"role": "member"})),
        ("disable", json!({"status": "disabled"})),
        (
            "demote and disable",
            json!({"role": "member", "status": "disabled"}),
        ),
    ] {
        let res = app.patch(&me, admin, body).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "{case}");
        assert_problem(res, StatusCode::CONFLICT, "last_admin").await;
    }
    assert_problem(
        app.delete(&me, admin).await,
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
    assert_problem(
        app.delete(&format!("{me}/purge"), admin).await,
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
    // Nothing changed.
    let still = json(app.get(&me, admin).await, StatusCode::OK).await;
    assert_eq!(still["role"], "admin");
    assert_eq!(still["status"], "active");
    assert!(still["deleted_at"].is_null());
    // Harmless patches of the last admin are fine.
    let renamed = json(
        app.patch(&me, admin, json!({"name": "Root", "role": "admin"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["name"], "Root");

    // A disabled second admin does not count.
    let (second_id, second_token) = app.user(&acme, "second@acme.test", "admin").await;
    json(
        app.patch(
            &format!("/v1/users/{second_id}"),
            admin,
            json!({"status": "disabled"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_problem(
        app.patch(&me, admin, json!({"role": "member"})).await,
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;

    // An active second admin does: the first may step down, and the demotion applies at once.
    json(
        app.patch(
            &format!("/v1/users/{second_id}"),
            admin,
            json!({"status": "active"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let demoted = json(
        app.patch(&me, admin, json!({"role": "member"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(demoted["role"], "member");
    assert_problem(
        app.get("/v1/users", admin).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Now the second admin is the last one.
    assert_problem(
        app.delete(&format!("/v1/users/{second_id}"), &second_token)
            .await,
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
    assert_problem(
        app.patch(
            &format!("/v1/users/{second_id}"),
            &second_token,
            json!({"role": "member"}),
        )
        .await,
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
}

#[tokio::test]
async fn members_see_only_themselves() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (member_id, member) = app.user(&acme, "m@acme.test", "member").await;

    assert_problem(
        app.get("/v1/users", &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let own = json(
        app.get(&format!("/v1/users/{member_id}"), &member).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(own["id"], member_id.as_str());
    assert_eq!(own["role"], "member");
    assert!(own.get("password_hash").is_none());

    // Another user and no user at all answer alike, so ids cannot be probed.
    let existing = app
        .get(&format!("/v1/users/{}", acme.admin_id), &member)
        .await;
    let missing = app
        .get(&format!("/v1/users/{}", uuid::Uuid::new_v4()), &member)
        .await;
    let existing_status = existing.status();
    assert!(
        existing_status == StatusCode::FORBIDDEN || existing_status == StatusCode::NOT_FOUND,
        "{existing_status}"
    );
    assert_eq!(missing.status(), existing_status);
    let a: Value = existing.json().await.unwrap();
    let b: Value = missing.json().await.unwrap();
    assert_eq!(a["code"], b["code"]);
    assert_eq!(a["detail"], b["detail"]);

    // Nor may a member change anyone, themselves included.
    for (case, res) in [
        (
            "promote self",
            app.patch(
                &format!("/v1/users/{member_id}"),
                &member,
                json!({"role": "admin"}),
            )
            .await,
        ),
        (
            "disable the admin",
            app.patch(
                &format!("/v1/users/{}", acme.admin_id),
                &member,
                json!({"status": "disabled"}),
            )
            .await,
        ),
        (
            "create a user",
            app.post(
                "/v1/users",
                &member,
                json!({"email": "x@acme.test", "password": "member-password-1", "role": "admin"}),
            )
            .await,
        ),
        (
            "delete the admin",
            app.delete(&format!("/v1/users/{}", acme.admin_id), &member)
                .await,
        ),
    ] {
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{case}");
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let still = json(
        app.get(&format!("/v1/users/{member_id}"), &member).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(still["role"], "member");
}

#[tokio::test]
async fn user_emails_are_unique_among_live_users() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin = &acme.admin_token;
    let create = |email: &'static str| {
        app.post(
            "/v1/users",
            admin,
            json!({"email": email, "password": "member-password-1", "role": "member"}),
        )
    };

    let first = json(create("e@acme.test").await, StatusCode::CREATED).await;
    let first_id = str_of(&first, "id").to_owned();
    assert_problem(
        create("e@acme.test").await,
        StatusCode::CONFLICT,
        "user_email_taken",
    )
    .await;
    assert_problem(
        create("E@ACME.TEST").await,
        StatusCode::CONFLICT,
        "user_email_taken",
    )
    .await;
    assert_problem(
        create("admin@acme.test").await,
        StatusCode::CONFLICT,
        "user_email_taken",
    )
    .await;

    // Deleted, the email is free again; restoring the old user into it is a conflict.
    assert_eq!(
        app.delete(&format!("/v1/users/{first_id}"), admin)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/v1/users/{first_id}"), admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let second = json(create("e@acme.test").await, StatusCode::CREATED).await;
    let second_id = str_of(&second, "id").to_owned();
    assert_ne!(first_id, second_id);
    assert_problem(
        app.post_empty(&format!("/v1/users/{first_id}/restore"), admin)
            .await,
        StatusCode::CONFLICT,
        "user_email_taken",
    )
    .await;
    let with_deleted = json(
        app.get("/v1/users?include_deleted=true", admin).await,
        StatusCode::OK,
    )
    .await;
    let old = with_deleted["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == first_id.as_str())
        .expect("the deleted user is listed with include_deleted");
    assert!(old["deleted_at"].is_string(), "still deleted: {old}");
    assert_eq!(old["deleted_by"], acme.admin_id.as_str());

    // Two creations racing for one email: exactly one wins, the other is a conflict (not a 500).
    let (x, y) = tokio::join!(create("race@acme.test"), create("race@acme.test"));
    let mut statuses = [x.status(), y.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let loser = if x.status() == StatusCode::CONFLICT {
        x
    } else {
        y
    };
    assert_problem(loser, StatusCode::CONFLICT, "user_email_taken").await;

    // The new user signs in with the email.
    let tokens = app.login("acme", "e@acme.test", "member-password-1").await;
    assert_eq!(tokens["user"]["id"], second_id.as_str());

    // Purge removes for good.
    assert_eq!(
        app.delete(&format!("/v1/users/{first_id}/purge"), admin)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.post_empty(&format!("/v1/users/{first_id}/restore"), admin)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.delete(&format!("/v1/users/{first_id}/purge"), admin)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let all = json(
        app.get("/v1/users?include_deleted=true", admin).await,
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&first_id.as_str()), "{ids:?}");
    assert!(ids.contains(&second_id.as_str()), "{ids:?}");
    assert!(ids.contains(&acme.admin_id.as_str()), "{ids:?}");
}

#[tokio::test]
async fn two_admins_removing_each_other_at_once_leave_one() {
    for round in 0..6 {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let (a_id, a) = (acme.admin_id.clone(), acme.admin_token.clone());
        let (b_id, b) = app.user(&acme, "b@acme.test", "admin").await;
        let (a_path, b_path) = (format!("/v1/users/{a_id}"), format!("/v1/users/{b_id}"));
        let (case, ra, rb) = match round % 3 {
            0 => {
                let body = json!({"role": "member"});
                let (ra, rb) = tokio::join!(
                    app.patch(&b_path, &a, body.clone()),
                    app.patch(&a_path, &b, body.clone())
                );
                ("demote each other", ra, rb)
            }
            1 => {
                let (ra, rb) = tokio::join!(app.delete(&b_path, &a), app.delete(&a_path, &b));
                ("delete each other", ra, rb)
            }
            _ => {
                let body = json!({"status": "disabled"});
                let (ra, rb) = tokio::join!(
                    app.patch(&a_path, &a, body.clone()),
                    app.patch(&b_path, &b, body.clone())
                );
                ("disable themselves", ra, rb)
            }
        };
        // The loser is refused either by the rule (409) or, when its own request is authenticated
        // after the winner's change, because it no longer is an active admin (403).
        let statuses = [ra.status(), rb.status()];
        let (won, lost) = if ra.status().is_success() {
            (ra, rb)
        } else {
            (rb, ra)
        };
        assert!(
            won.status().is_success(),
            "round {round} ({case}): one wins, got {statuses:?}"
        );
        let lost_status = lost.status();
        let problem: Value = lost.json().await.unwrap();
        assert!(
            (lost_status == StatusCode::CONFLICT && problem["code"] == "last_admin")
                || (lost_status == StatusCode::FORBIDDEN && problem["code"] == "forbidden"),
            "round {round} ({case}): the other is refused, got {lost_status} {problem}"
        );
        // Counted with the platform role (past RLS): a no-op update reports how many rows match.
        let db = app.platform_connection().await;
        let active_admins = db
            .execute_unprepared(
                "UPDATE users SET role = role \
                 WHERE role = 'admin' AND status = 'active' AND deleted_at IS NULL",
            )
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(active_admins, 1, "round {round} ({case})");
    }
}

#[tokio::test]
async fn me_and_tenant_answer_any_api_key_whatever_its_scopes() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for scopes in [&["write"][..], &["admin"][..]] {
        let (id, key) = app.api_key(&acme, scopes).await;
        let me = json(app.get("/v1/me", &key).await, StatusCode::OK).await;
        assert_eq!(me["api_key"]["id"], id.as_str(), "{scopes:?}");
        assert_eq!(me["api_key"]["scopes"], json!(scopes), "{scopes:?}");
        assert_eq!(me["tenant"]["id"], acme.id.as_str(), "{scopes:?}");
        let tenant = json(app.get("/v1/tenant", &key).await, StatusCode::OK).await;
        assert_eq!(tenant["id"], acme.id.as_str(), "{scopes:?}");
    }
}

#[tokio::test]
async fn refreshing_a_deleted_users_token_is_forbidden_like_a_disabled_ones() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/v1/users",
            &acme.admin_token,
            json!({"email": "m@acme.test", "password": "member-password-1", "role": "member"}),
        )
        .await;
    let member = json(res, StatusCode::CREATED).await;
    let tokens = app.login("acme", "m@acme.test", "member-password-1").await;
    assert_eq!(
        app.delete(
            &format!("/v1/users/{}", str_of(&member, "id")),
            &acme.admin_token
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    // The access token is refused with 403, as the contract says of deleted users ...
    assert_problem(
        app.get("/v1/agents", str_of(&tokens, "access_token")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // ... and so should the refresh token be.
    assert_problem(
        refresh_response(&app, str_of(&tokens, "refresh_token")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}
