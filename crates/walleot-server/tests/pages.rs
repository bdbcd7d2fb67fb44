//! The payer's pages over real HTTP, with a software authenticator standing in for the
//! browser's: security headers, CSRF, and the rules of approvals.

use reqwest::{Client, Response};
use serde_json::{json, Value};
use walleot_server::domain::factors::totp;
use walleot_server::domain::Clock;
use walleot_server::testing::webauthn::SoftAuthenticator;
use walleot_server::testing::TestServer;

/// A browser: keeps cookies, talks to the pages as `localhost` (passkeys need a name).
struct Browser {
    http: Client,
    base: String,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        let port = server.base_url.rsplit(':').next().unwrap();
        Browser {
            http: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("http://localhost:{port}"),
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// The CSRF token of the last page: every page carries it in a meta tag.
    async fn csrf(&self) -> String {
        let html = self.page("/wallet").await;
        between(&html, "name=\"csrf-token\" content=\"", "\"").to_string()
    }

    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str, body: Value) -> (u16, Value) {
        let csrf = self.csrf().await;
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("x-csrf-token", csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Two clicks: "Create wallet", then the authenticator's confirmation.
    async fn register(&self, authenticator: &mut SoftAuthenticator) {
        let (status, options) = self.json("/webauthn/register/options", json!({})).await;
        assert_eq!(status, 200, "{options}");
        let mut answer = authenticator.register(&options["publicKey"]);
        answer["challengeId"] = options["challengeId"].clone();
        let (status, done) = self.json("/webauthn/register/finish", answer).await;
        assert_eq!(status, 200, "{done}");
    }

    async fn approve(&self, authenticator: &mut SoftAuthenticator, session: &str) -> (u16, Value) {
        let (status, options) = self
            .json("/webauthn/approve/options", json!({"sessionId": session}))
            .await;
        assert_eq!(status, 200, "{options}");
        let mut answer = authenticator.assert(&options["publicKey"]);
        answer["challengeId"] = options["challengeId"].clone();
        self.json("/webauthn/approve/finish", answer).await
    }

    async fn state_of(&self, session: &str) -> String {
        let html = self.page(&format!("/checkout/{session}")).await;
        between(&html, "data-state=\"", "\"").to_string()
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in page"))
        + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

async fn session(server: &TestServer, amount: i64) -> String {
    let body: Value = Client::new()
        .post(format!("{}/v1/sessions", server.base_url))
        .bearer_auth(&server.test_key)
        .json(&json!({"amount": amount, "currency": "usd", "description": "Analysis"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["sessionId"].as_str().unwrap().to_string()
}

async fn status(server: &TestServer, id: &str) -> String {
    let body: Value = Client::new()
        .get(format!("{}/v1/sessions/{id}", server.base_url))
        .bearer_auth(&server.test_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pages_are_sent_with_security_headers_and_strict_cookies() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let id = session(&server, 100).await;
    let response = browser.get(&format!("/checkout/{id}")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Demo merchant") && html.contains("1.00 USD") && html.contains("Analysis")
    );
}

#[tokio::test]
async fn unknown_payments_get_a_clear_page_never_an_error_dump() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    for id in [
        "sess_000000000000000000000000",
        "nothing",
        "%FF%FE",
        "sess_%3Cscript%3E",
    ] {
        let response = browser.get(&format!("/checkout/{id}")).await;
        assert_eq!(response.status(), 404, "{id}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = response.text().await.unwrap();
        assert!(html.contains("No such payment"), "{id}: {html}");
        assert!(!html.contains("<script>"));
    }
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_or_from_another_site_are_refused() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let id = session(&server, 100).await;
    let token = browser.csrf().await;
    let path = format!("/checkout/{id}/decline");
    assert_eq!(browser.form(&path, &[]).await.status(), 403);
    assert_eq!(
        browser.form(&path, &[("csrf", "forged")]).await.status(),
        403
    );
    let foreign = browser
        .http
        .post(format!("{}{path}", browser.base))
        .header("origin", "http://evil.example")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // A fresh browser's token does not work with this browser's cookie, nor the reverse.
    let stranger = Browser::new(&server);
    assert_eq!(
        stranger
            .form(&path, &[("csrf", token.as_str())])
            .await
            .status(),
        403
    );
    assert_eq!(status(&server, &id).await, "pending");
    assert_eq!(
        browser
            .form(&path, &[("csrf", token.as_str())])
            .await
            .status(),
        303
    );
    assert_eq!(status(&server, &id).await, "cancelled");
}

#[tokio::test]
async fn a_passkey_wallet_pays_small_charges_at_once_and_larger_ones_with_one_assertion() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;

    let small = session(&server, 20).await;
    assert_eq!(browser.state_of(&small).await, "paid");
    assert_eq!(status(&server, &small).await, "paid");

    let large = session(&server, 250).await;
    assert_eq!(browser.state_of(&large).await, "approve");
    assert_eq!(status(&server, &large).await, "pending");
    let (code, body) = browser.approve(&mut authenticator, &large).await;
    assert_eq!((code, &body["status"]), (200, &json!("paid")), "{body}");
    assert_eq!(browser.state_of(&large).await, "paid");
    let approval = server
        .services
        .store
        .approval_of(&large)
        .await
        .unwrap()
        .unwrap();
    assert!(approval.evidence.unwrap().contains("clientDataJSON"));
}

#[tokio::test]
async fn an_approval_cannot_be_replayed_or_moved_to_another_charge() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let cheap = session(&server, 150).await;
    let dear = session(&server, 900).await;

    // Options for both; the client signs the dear one's challenge but names the cheap
    // one's ceremony.
    let (_, cheap_options) = browser
        .json("/webauthn/approve/options", json!({"sessionId": cheap}))
        .await;
    let (_, dear_options) = browser
        .json("/webauthn/approve/options", json!({"sessionId": dear}))
        .await;
    let mut swapped = authenticator.assert(&dear_options["publicKey"]);
    swapped["challengeId"] = cheap_options["challengeId"].clone();
    let (code, _) = browser.json("/webauthn/approve/finish", swapped).await;
    assert_eq!(code, 400);
    assert_eq!(status(&server, &cheap).await, "pending");
    assert_eq!(status(&server, &dear).await, "pending");

    // A good assertion works once; sent again, it is refused and nothing is charged twice.
    let (_, options) = browser
        .json("/webauthn/approve/options", json!({"sessionId": cheap}))
        .await;
    let mut answer = authenticator.assert(&options["publicKey"]);
    answer["challengeId"] = options["challengeId"].clone();
    assert_eq!(
        browser
            .json("/webauthn/approve/finish", answer.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        browser.json("/webauthn/approve/finish", answer).await.0,
        400
    );
    let charges = server.transfers_of(&cheap).await;
    assert_eq!(charges, 1);
    assert_eq!(status(&server, &dear).await, "pending");
}

#[tokio::test]
async fn another_payers_passkey_does_not_approve() {
    let server = TestServer::start().await;
    let owner = Browser::new(&server);
    let mut owners_key = SoftAuthenticator::new(&owner.base);
    owner.register(&mut owners_key).await;
    let thief = Browser::new(&server);
    let mut thiefs_key = SoftAuthenticator::new(&thief.base);
    thief.register(&mut thiefs_key).await;
    let id = session(&server, 500).await;
    let (_, options) = thief
        .json("/webauthn/approve/options", json!({"sessionId": id}))
        .await;
    // The thief's browser sends an assertion made with the owner's credential id but
    // the thief's key, and one with the owner's key over the thief's challenge.
    let mut forged = thiefs_key.assert(&options["publicKey"]);
    forged["credentialId"] = json!(walleot_server::domain::factors::webauthn::encode(
        &owners_key.credential_id
    ));
    forged["challengeId"] = options["challengeId"].clone();
    assert_eq!(thief.json("/webauthn/approve/finish", forged).await.0, 400);
    assert_eq!(status(&server, &id).await, "pending");
}

#[tokio::test]
async fn repeated_failures_lock_approval_and_leave_the_payment_pending() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let id = session(&server, 400).await;
    let mut impostor = SoftAuthenticator::new(&browser.base);
    impostor.credential_id = authenticator.credential_id.clone();
    for _ in 0..5 {
        let (code, _) = browser.approve(&mut impostor, &id).await;
        assert_eq!(code, 400);
    }
    assert_eq!(browser.state_of(&id).await, "locked");
    let (code, body) = browser
        .json("/webauthn/approve/options", json!({"sessionId": id}))
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(status(&server, &id).await, "pending");
    // The lock passes with time.
    server.clock.advance_ms(16 * 60 * 1000);
    let (code, _) = browser.approve(&mut authenticator, &id).await;
    assert_eq!(code, 200);
    assert_eq!(status(&server, &id).await, "paid");
}

#[tokio::test]
async fn an_authenticator_app_registers_a_wallet_and_each_code_works_once() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let html = browser.page("/wallet/totp").await;
    let secret_text = between(&html, "id=\"totp-secret\">", "<").to_string();
    let seal = between(&html, "name=\"seal\" value=\"", "\"").to_string();
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
    let secret = totp::secret_from_text(&secret_text).unwrap();
    let now = server.clock.now_ms();
    let step = now / 1000 / totp::STEP_SECS;
    let code = totp::code_at(&secret, step);
    let fields = |seal: &str, code: &str| {
        vec![
            ("csrf".to_string(), csrf.clone()),
            ("secret".to_string(), secret_text.clone()),
            ("seal".to_string(), seal.to_string()),
            ("code".to_string(), code.to_string()),
            ("return_to".to_string(), "/wallet".to_string()),
        ]
    };
    let post = |fields: Vec<(String, String)>| {
        browser
            .http
            .post(format!("{}/wallet/totp", browser.base))
            .header("origin", &browser.base)
            .form(&fields)
            .send()
    };
    assert_eq!(
        post(fields("tampered", &code)).await.unwrap().status(),
        403,
        "the seal protects the secret"
    );
    assert_eq!(post(fields(&seal, "000000")).await.unwrap().status(), 400);
    let done = post(fields(&seal, &code)).await.unwrap();
    assert_eq!(done.status(), 303);
    assert!(done.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("walleot_payer="));
    assert!(browser
        .page("/wallet")
        .await
        .contains("Authenticator app: enrolled"));

    let id = session(&server, 300).await;
    assert_eq!(browser.state_of(&id).await, "approve");
    let token = browser.csrf().await;
    let approve = |code: String| {
        let token = token.clone();
        let path = format!("/checkout/{id}/approve");
        let browser = &browser;
        async move {
            browser
                .form(&path, &[("csrf", token.as_str()), ("code", code.as_str())])
                .await
        }
    };
    // The code that enrolled the app cannot approve a payment: each step is used once.
    approve(code.clone()).await;
    assert_eq!(status(&server, &id).await, "pending");
    server.clock.advance_ms(30_000);
    let next = totp::code_at(&secret, step + 1);
    assert_eq!(approve(next).await.status(), 303);
    assert_eq!(status(&server, &id).await, "paid");
    let approval = server
        .services
        .store
        .approval_of(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approval.method.as_str(), "totp");
}

#[tokio::test]
async fn the_threshold_refuses_bad_amounts_and_applies_good_ones() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let token = browser.csrf().await;
    for bad in ["abc", "-1", "1.234", "100000"] {
        let response = browser
            .form(
                "/wallet/threshold",
                &[
                    ("csrf", token.as_str()),
                    ("currency", "usd"),
                    ("amount", bad),
                ],
            )
            .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let saved = browser
        .form(
            "/wallet/threshold",
            &[
                ("csrf", token.as_str()),
                ("currency", "usd"),
                ("amount", "3"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    let id = session(&server, 300).await;
    assert_eq!(browser.state_of(&id).await, "paid");
    let over = session(&server, 301).await;
    assert_eq!(browser.state_of(&over).await, "approve");
}

#[tokio::test]
async fn random_paths_and_forms_never_get_a_500() {
    use proptest::strategy::{Strategy, ValueTree};
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let segment = "[a-zA-Z0-9_%.\\-]{0,40}";
    let form = proptest::collection::vec(("[a-z_]{1,10}", "[ -~]{0,30}"), 0..5);
    for _ in 0..100 {
        let id = segment.new_tree(&mut runner).unwrap().current();
        let fields = form.new_tree(&mut runner).unwrap().current();
        for path in [
            format!("/checkout/{id}"),
            format!("/checkout/{id}/decline"),
            "/wallet/threshold".into(),
            "/wallet/vouchers".into(),
            "/wallet/totp".into(),
        ] {
            let get = browser.get(&path).await.status().as_u16();
            assert!(get < 500, "GET {path}: {get}");
            let post = browser
                .form(
                    &path,
                    &fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect::<Vec<_>>(),
                )
                .await;
            assert!(
                post.status().as_u16() < 500,
                "POST {path} {fields:?}: {}",
                post.status()
            );
        }
    }
}
