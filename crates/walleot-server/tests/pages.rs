//! The payer's pages over real HTTP, with a software authenticator standing in for the
//! browser's: security headers, CSRF, and the rules of approvals.

use reqwest::{Client, Response};
use serde_json::{json, Value};
use walleot_server::domain::factors::totp;
use walleot_server::domain::Clock;
use walleot_server::testing::webauthn::{SoftAuthenticator, SoftKey};
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

    /// A page opened as the payer opens a link: a top-level navigation they started.
    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("sec-fetch-site", "none")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-user", "?1")
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
async fn an_rs256_passkey_like_windows_hello_registers_and_approves() {
    a_passkey_of_this_kind_registers_and_approves(SoftAuthenticator::rs256, "RS256").await;
}

#[tokio::test]
async fn an_ed25519_passkey_like_some_security_keys_make_registers_and_approves() {
    a_passkey_of_this_kind_registers_and_approves(SoftAuthenticator::ed25519, "EDDSA").await;
}

async fn a_passkey_of_this_kind_registers_and_approves(
    make: fn(&str) -> SoftAuthenticator,
    algorithm: &str,
) {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = make(&browser.base);
    // The authenticator refuses to answer unless its algorithm is among those offered.
    browser.register(&mut authenticator).await;
    let stored = server
        .services
        .store
        .find_passkey(&authenticator.credential_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&stored.public_key).contains(algorithm),
        "the stored credential names its algorithm"
    );

    let large = session(&server, 250).await;
    assert_eq!(browser.state_of(&large).await, "approve");
    let (code, body) = browser.approve(&mut authenticator, &large).await;
    assert_eq!((code, &body["status"]), (200, &json!("paid")), "{body}");
    assert_eq!(status(&server, &large).await, "paid");
    let evidence = server
        .services
        .store
        .approval_of(&large)
        .await
        .unwrap()
        .unwrap()
        .evidence
        .unwrap();
    assert!(evidence.contains("clientDataJSON"), "{evidence}");

    // Another key of the same kind under the same credential id does not approve.
    let other = session(&server, 260).await;
    let mut impostor = make(&browser.base);
    impostor.credential_id = authenticator.credential_id.clone();
    let (code, _) = browser.approve(&mut impostor, &other).await;
    assert_eq!(code, 400);
    assert_eq!(status(&server, &other).await, "pending");
    let (code, _) = browser.approve(&mut authenticator, &other).await;
    assert_eq!(code, 200);
    assert_eq!(status(&server, &other).await, "paid");
}

#[tokio::test]
async fn a_signature_counter_that_goes_back_is_refused() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let first = session(&server, 300).await;
    let (code, _) = browser.approve(&mut authenticator, &first).await;
    assert_eq!(code, 200);

    // A copy of the authenticator that signs with a counter already seen.
    let id = session(&server, 310).await;
    let (_, options) = browser
        .json("/webauthn/approve/options", json!({"sessionId": id}))
        .await;
    let challenge = walleot_server::domain::factors::webauthn::decode(
        options["publicKey"]["challenge"].as_str().unwrap(),
    )
    .unwrap();
    let mut answer = authenticator.assert_with_count("localhost", &challenge, 1);
    answer["challengeId"] = options["challengeId"].clone();
    let (code, body) = browser.json("/webauthn/approve/finish", answer).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(status(&server, &id).await, "pending");
    let (code, _) = browser.approve(&mut authenticator, &id).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_passkey_stored_before_the_crate_still_approves() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    // Put the key back in the form it was stored in before: the bare SEC1 point.
    let SoftKey::Es256(key) = &authenticator.key else {
        unreachable!("an ES256 authenticator")
    };
    let point = key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    // Bytes as SQL literals: X'…' in SQLite, '\x…' in PostgreSQL.
    let literal = |bytes: &[u8]| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if server.database_url.starts_with("sqlite:") {
            format!("X'{hex}'")
        } else {
            format!("'\\x{hex}'::BYTEA")
        }
    };
    let updated = server
        .execute_sql(&format!(
            "UPDATE passkeys SET public_key = {} WHERE credential_id = {}",
            literal(&point),
            literal(&authenticator.credential_id)
        ))
        .await
        .unwrap();
    assert_eq!(updated, 1);

    let id = session(&server, 400).await;
    let (code, body) = browser.approve(&mut authenticator, &id).await;
    assert_eq!((code, &body["status"]), (200, &json!("paid")), "{body}");
    // Its counter is still enforced.
    let again = session(&server, 410).await;
    let (_, options) = browser
        .json("/webauthn/approve/options", json!({"sessionId": again}))
        .await;
    let challenge = walleot_server::domain::factors::webauthn::decode(
        options["publicKey"]["challenge"].as_str().unwrap(),
    )
    .unwrap();
    let mut answer = authenticator.assert_with_count("localhost", &challenge, 1);
    answer["challengeId"] = options["challengeId"].clone();
    assert_eq!(
        browser.json("/webauthn/approve/finish", answer).await.0,
        400
    );
    assert_eq!(status(&server, &again).await, "pending");
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

/// Return addresses a hostile link could carry, as they appear in a query string or a
/// form body (still percent-encoded).
const HOSTILE_RETURNS: &[&str] = &[
    "//evil.example",
    "///evil.example",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "/%5Cevil.example",
    "%5C%5Cevil.example",
    "/%5C/evil.example",
    "/%09/evil.example/x",
    "/%09%09/evil.example",
    "%09/evil.example",
    "/%0d%0a/evil.example",
    "/%0D%0ASet-Cookie:%20walleot_payer=x",
    "/%0a/evil.example",
    "%00",
    "/%00/evil.example",
    "/%20/evil.example",
    "%20//evil.example",
    "/%C2%A0/evil.example",
    "/%E2%80%A8/evil.example",
    "https://evil.example",
    "https:%2F%2Fevil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "/..//evil.example",
    "/.//evil.example",
    "/a/../..//evil.example",
    "/%2e%2e//evil.example",
    "/%252e%252e//evil.example",
    "/%2e//evil.example",
    "",
];

/// What a browser makes of a `Location`: it must stay on `base`'s origin, as a path with
/// nothing a browser would strip or read as a slash.
fn assert_stays_local(base: &str, location: &str, case: &str) {
    assert!(
        location.starts_with('/')
            && !location.starts_with("//")
            && !location.contains('\\')
            && !location
                .chars()
                .any(|c| c.is_control() || c.is_whitespace()),
        "{case:?} redirected to {location:?}"
    );
    let base = url::Url::parse(base).unwrap();
    assert_eq!(
        base.join(location).unwrap().origin(),
        base.origin(),
        "{case:?} redirected to {location:?}"
    );
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

impl Browser {
    /// A form posted with a body written by hand, so that hostile values arrive exactly.
    async fn raw_form(&self, path: &str, body: String) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn hostile_return_addresses_only_ever_lead_back_to_this_site() {
    // One enrolment and one top-up per case: more than the hourly limits allow.
    let server = TestServer::start_with(|c| {
        c.page_limits.enrolments_per_hour = 1000;
        c.page_limits.top_ups_per_hour = 1000;
    })
    .await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    for case in HOSTILE_RETURNS {
        // The enrolment form carries the address on; the confirmation redirects to it.
        let form = browser.get(&format!("/wallet/totp?return_to={case}")).await;
        assert_eq!(form.status(), 200, "{case:?}");
        let html = form.text().await.unwrap();
        let carried = between(&html, "name=\"return_to\" value=\"", "\"").replace("&#x2f;", "/");
        assert_eq!(carried, "/wallet", "{case:?}");
        let secret_text = between(&html, "id=\"totp-secret\">", "<").to_string();
        let seal = between(&html, "name=\"seal\" value=\"", "\"").to_string();
        let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
        let secret = totp::secret_from_text(&secret_text).unwrap();
        let code = totp::code_at(&secret, server.clock.now_ms() / 1000 / totp::STEP_SECS);
        let enrolled = browser
            .raw_form(
                "/wallet/totp",
                format!(
                    "csrf={csrf}&secret={secret_text}&seal={seal}&code={code}&return_to={case}"
                ),
            )
            .await;
        assert_eq!(enrolled.status(), 303, "{case:?}");
        assert_stays_local(&browser.base, &location(&enrolled), case);
        assert_eq!(location(&enrolled), "/wallet?notice=totp", "{case:?}");

        let topped_up = browser
            .raw_form(
                "/wallet/credits",
                format!("csrf={csrf}&currency=usd&return_to={case}"),
            )
            .await;
        assert_eq!(topped_up.status(), 303, "{case:?}");
        assert_eq!(location(&topped_up), "/wallet?notice=credits", "{case:?}");
    }
    // A path of this site is kept, query and all.
    let csrf = browser.csrf().await;
    let kept = browser
        .raw_form(
            "/wallet/credits",
            format!("csrf={csrf}&currency=usd&return_to=/checkout/sess_x%3Fa%3Db"),
        )
        .await;
    assert_eq!(location(&kept), "/checkout/sess_x?a=b");
}

#[tokio::test]
async fn hostile_payment_ids_in_form_paths_never_redirect_away_or_fail() {
    let server = TestServer::start().await;
    let stranger = Browser::new(&server);
    let payer = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&payer.base);
    payer.register(&mut authenticator).await;
    for browser in [&stranger, &payer] {
        let csrf = browser.csrf().await;
        for id in [
            "%0d%0a",
            "%0a",
            "%09",
            "%00",
            "%2F%2Fevil.example",
            "%5C%5Cevil.example",
            "..%2F..%2F%2Fevil.example",
        ] {
            for action in ["approve", "decline"] {
                let response = browser
                    .raw_form(
                        &format!("/checkout/{id}/{action}"),
                        format!("csrf={csrf}&code=123456"),
                    )
                    .await;
                let status = response.status().as_u16();
                assert!(status < 500, "{action} {id}: {status}");
                if status == 303 {
                    assert_stays_local(&browser.base, &location(&response), id);
                }
            }
        }
    }
}

/// Request headers, by name and value.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The Fetch Metadata a browser sends when the payer opens a link themselves.
const PAYER_OPENS_LINK: &[(&str, &str)] = &[
    ("sec-fetch-site", "cross-site"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-user", "?1"),
];

impl Browser {
    /// Opens a page with the given request headers, as a browser would send them.
    async fn open(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// The wallet's balance table, as the wallet page shows it.
    async fn balances(&self) -> String {
        let html = self.page("/wallet").await;
        between(&html, "<table id=\"balances\">", "</table>").to_string()
    }
}

#[tokio::test]
async fn a_checkout_opened_without_fetch_metadata_waits_for_one_click_on_pay() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let id = session(&server, 20).await;

    let html = browser
        .open(&format!("/checkout/{id}"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(between(&html, "data-state=\"", "\""), "confirm");
    assert!(
        html.contains(&format!("action=\"/checkout/{id}/pay\"")),
        "{html}"
    );
    assert_eq!(status(&server, &id).await, "pending");
    assert!(browser.balances().await.contains("10.00 USD"));

    // The button is a form of this site: without its token it does nothing.
    let path = format!("/checkout/{id}/pay");
    assert_eq!(
        browser.form(&path, &[("csrf", "forged")]).await.status(),
        403
    );
    assert_eq!(status(&server, &id).await, "pending");
    let token = browser.csrf().await;
    let paid = browser.form(&path, &[("csrf", token.as_str())]).await;
    assert_eq!(paid.status(), 303);
    assert_eq!(location(&paid), format!("/checkout/{id}"));
    assert_eq!(status(&server, &id).await, "paid");
    assert!(browser.balances().await.contains("9.80 USD"));
    assert_eq!(server.transfers_of(&id).await, 1);
    let approval = server
        .services
        .store
        .approval_of(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approval.method.as_str(), "auto");
    // Pressed again, nothing more is charged.
    let again = browser.form(&path, &[("csrf", token.as_str())]).await;
    assert_eq!(again.status(), 303);
    assert_eq!(server.transfers_of(&id).await, 1);
}

#[tokio::test]
async fn a_charge_pays_itself_only_on_a_navigation_the_payer_started() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let nav = |site: &'static str, user: bool| {
        let mut h = vec![
            ("sec-fetch-site", site),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        if user {
            h.push(("sec-fetch-user", "?1"));
        }
        h
    };
    let cases: Vec<(&str, Headers, bool)> = vec![
        ("no fetch metadata", vec![], false),
        (
            "typed or bookmarked",
            vec![("sec-fetch-site", "none")],
            true,
        ),
        ("typed, full metadata", nav("none", true), true),
        ("from a page of this site", nav("same-origin", false), true),
        (
            "a link clicked on another site",
            PAYER_OPENS_LINK.to_vec(),
            true,
        ),
        (
            "a link clicked, no destination",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-user", "?1"),
            ],
            true,
        ),
        (
            "a redirect or script of another site",
            nav("cross-site", false),
            false,
        ),
        (
            "a sibling subdomain, no click",
            nav("same-site", false),
            false,
        ),
        ("the header alone", vec![("sec-fetch-user", "?1")], false),
        (
            "a click into a frame",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "iframe"),
                ("sec-fetch-user", "?1"),
            ],
            false,
        ),
        (
            "an image of another site",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ],
            false,
        ),
        (
            "a script's fetch on this site",
            vec![
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
            ],
            false,
        ),
        (
            "a prefetch",
            [nav("none", false), vec![("sec-purpose", "prefetch")]].concat(),
            false,
        ),
        (
            "a prerender of a clicked link",
            [
                PAYER_OPENS_LINK.to_vec(),
                vec![("sec-purpose", "prefetch;prerender")],
            ]
            .concat(),
            false,
        ),
        (
            "an old prefetch header",
            [nav("none", false), vec![("purpose", "prefetch")]].concat(),
            false,
        ),
        ("nonsense", vec![("sec-fetch-site", "everywhere")], false),
    ];
    for (case, headers, pays) in cases {
        let id = session(&server, 20).await;
        let html = browser
            .open(&format!("/checkout/{id}"), &headers)
            .await
            .text()
            .await
            .unwrap();
        let shown = between(&html, "data-state=\"", "\"").to_string();
        let expected = if pays {
            ("paid", "paid")
        } else {
            ("confirm", "pending")
        };
        assert_eq!(
            (shown.as_str(), status(&server, &id).await.as_str()),
            expected,
            "{case}"
        );
    }
}

#[tokio::test]
async fn sixty_drive_by_page_loads_charge_nothing() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(session(&server, 20).await);
    }
    let browser = &browser;
    let loads = ids.iter().enumerate().map(|(i, id)| {
        let headers: &[(&str, &str)] = if i % 2 == 0 {
            &[]
        } else {
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ]
        };
        let path = format!("/checkout/{id}");
        async move { browser.open(&path, headers).await }
    });
    for response in futures::future::join_all(loads).await {
        assert_eq!(response.status(), 200);
    }
    for id in &ids {
        assert_eq!(status(&server, id).await, "pending");
        assert_eq!(server.transfers_of(id).await, 0);
    }
    assert!(browser.balances().await.contains("10.00 USD"));
}

#[tokio::test]
async fn wallet_creation_is_limited_per_address_with_a_429_page() {
    let server = TestServer::start().await;
    let credits = || async {
        let (_, transfers) = server.services.store.ledger_snapshot().await.unwrap();
        transfers
            .iter()
            .filter(|t| t.kind == walleot_server::domain::ledger::TransferKind::SandboxCredit)
            .count()
    };
    // The default: ten new wallets per address per hour.
    for _ in 0..10 {
        let browser = Browser::new(&server);
        browser
            .register(&mut SoftAuthenticator::new(&browser.base))
            .await;
    }
    assert_eq!(credits().await, 10);

    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    let (_, options) = browser.json("/webauthn/register/options", json!({})).await;
    let mut answer = authenticator.register(&options["publicKey"]);
    answer["challengeId"] = options["challengeId"].clone();
    let (code, body) = browser.json("/webauthn/register/finish", answer).await;
    assert_eq!(
        (code, &body["error"]["type"]),
        (429, &json!("rate_limited")),
        "{body}"
    );

    // The authenticator-app way is refused too, with a page.
    let html = browser.page("/wallet/totp").await;
    let secret_text = between(&html, "id=\"totp-secret\">", "<").to_string();
    let seal = between(&html, "name=\"seal\" value=\"", "\"").to_string();
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
    let secret = totp::secret_from_text(&secret_text).unwrap();
    let code = totp::code_at(&secret, server.clock.now_ms() / 1000 / totp::STEP_SECS);
    let refused = browser
        .form(
            "/wallet/totp",
            &[
                ("csrf", csrf.as_str()),
                ("secret", secret_text.as_str()),
                ("seal", seal.as_str()),
                ("code", code.as_str()),
            ],
        )
        .await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(refused.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(refused.text().await.unwrap().contains("Too many"));
    assert_eq!(
        credits().await,
        10,
        "no wallet and no credits beyond the limit"
    );
    assert!(!browser.page("/wallet").await.contains("id=\"balances\""));

    // The hour passes.
    server.clock.advance_ms(3600 * 1000);
    let later = Browser::new(&server);
    later
        .register(&mut SoftAuthenticator::new(&later.base))
        .await;
    assert_eq!(credits().await, 11);
}

#[tokio::test]
async fn payments_without_a_tap_are_limited_per_merchant_and_hour() {
    let server = TestServer::start_with(|c| c.wallets.auto_approvals_per_hour = 3).await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    assert!(browser
        .page("/wallet")
        .await
        .contains("At most 3 such payments to each merchant within an hour"));

    // Two open as the payer opens them, one with the pay button: three in the hour.
    for _ in 0..2 {
        let id = session(&server, 20).await;
        assert_eq!(browser.state_of(&id).await, "paid");
    }
    let clicked = session(&server, 20).await;
    browser.open(&format!("/checkout/{clicked}"), &[]).await;
    let token = browser.csrf().await;
    let pay = format!("/checkout/{clicked}/pay");
    browser.form(&pay, &[("csrf", token.as_str())]).await;
    assert_eq!(status(&server, &clicked).await, "paid");

    // The fourth asks for the second factor, however it is opened or clicked.
    let fourth = session(&server, 20).await;
    let html = browser.page(&format!("/checkout/{fourth}")).await;
    assert_eq!(between(&html, "data-state=\"", "\""), "approve");
    assert!(
        html.contains("You have made 3 payments without a tap"),
        "{html}"
    );
    let pay = format!("/checkout/{fourth}/pay");
    assert_eq!(
        browser
            .form(&pay, &[("csrf", token.as_str())])
            .await
            .status(),
        303
    );
    assert_eq!(status(&server, &fourth).await, "pending");
    let (code, _) = browser.approve(&mut authenticator, &fourth).await;
    assert_eq!(code, 200);
    assert_eq!(status(&server, &fourth).await, "paid");

    // Another merchant counts apart.
    let other = server
        .other_merchant_key("Other merchant", walleot_server::domain::Livemode::Test)
        .await;
    let body: Value = Client::new()
        .post(format!("{}/v1/sessions", server.base_url))
        .bearer_auth(&other)
        .json(&json!({"amount": 20, "currency": "usd"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let elsewhere = body["sessionId"].as_str().unwrap();
    assert_eq!(browser.state_of(elsewhere).await, "paid");

    // An hour after the first, the count has room again.
    server.clock.advance_ms(3600 * 1000);
    let later = session(&server, 20).await;
    assert_eq!(browser.state_of(&later).await, "paid");
}

#[tokio::test]
async fn the_hourly_limit_holds_under_concurrent_page_loads() {
    let server = TestServer::start_with(|c| c.wallets.auto_approvals_per_hour = 5).await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(session(&server, 20).await);
    }
    let browser = &browser;
    let loads = ids.iter().map(|id| {
        let path = format!("/checkout/{id}");
        async move { browser.get(&path).await }
    });
    futures::future::join_all(loads).await;
    let mut paid = 0;
    for id in &ids {
        if status(&server, id).await == "paid" {
            paid += 1;
        }
    }
    assert_eq!(paid, 5);
    assert!(browser.balances().await.contains("9.00 USD"));
}

#[tokio::test]
async fn approvals_and_top_ups_are_limited_per_address_with_a_429_page() {
    let server = TestServer::start_with(|c| {
        c.page_limits.approvals_per_hour = 3;
        c.page_limits.top_ups_per_hour = 2;
    })
    .await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;

    // A passkey approval takes two requests of the three.
    let first = session(&server, 250).await;
    assert_eq!(browser.approve(&mut authenticator, &first).await.0, 200);
    let second = session(&server, 300).await;
    let (code, options) = browser
        .json("/webauthn/approve/options", json!({"sessionId": second}))
        .await;
    assert_eq!(code, 200);
    let mut answer = authenticator.assert(&options["publicKey"]);
    answer["challengeId"] = options["challengeId"].clone();
    let csrf = browser.csrf().await;
    let refused = browser
        .http
        .post(format!("{}/webauthn/approve/finish", browser.base))
        .header("origin", &browser.base)
        .header("x-csrf-token", &csrf)
        .json(&answer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limited", "{body}");
    assert_eq!(status(&server, &second).await, "pending");
    assert_eq!(server.transfers_of(&second).await, 0);

    // The pay button and the app code are refused alike, with a page.
    let small = session(&server, 20).await;
    browser.open(&format!("/checkout/{small}"), &[]).await;
    for (path, fields) in [
        (
            format!("/checkout/{small}/pay"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            format!("/checkout/{second}/approve"),
            vec![("csrf", csrf.as_str()), ("code", "123456")],
        ),
    ] {
        let refused = browser.form(&path, &fields).await;
        assert_eq!(refused.status(), 429, "{path}");
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
        assert!(refused.text().await.unwrap().contains("Too many attempts"));
    }
    assert_eq!(status(&server, &small).await, "pending");
    assert_eq!(status(&server, &second).await, "pending");

    // Two top-ups, then the third voucher waits for the next hour.
    let vouchers = server
        .wallets()
        .create_vouchers(500, walleot_api::Currency::USD, false, 2)
        .await
        .unwrap();
    let code = |i: usize| vouchers[i].1.clone();
    let redeem = |code: String| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .form(
                    "/wallet/vouchers",
                    &[("csrf", csrf.as_str()), ("code", code.as_str())],
                )
                .await
        }
    };
    assert_eq!(redeem(code(0)).await.status(), 303);
    let credits = browser
        .form(
            "/wallet/credits",
            &[("csrf", csrf.as_str()), ("currency", "usd")],
        )
        .await;
    assert_eq!(credits.status(), 303);
    let balance = browser.balances().await;
    assert!(balance.contains("22.50 USD"), "{balance}");
    let refused = redeem(code(1)).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(browser.balances().await.contains("22.50 USD"));

    server.clock.advance_ms(3600 * 1000);
    assert_eq!(redeem(code(1)).await.status(), 303);
    assert!(browser.balances().await.contains("27.50 USD"));
    let (code, _) = browser.approve(&mut authenticator, &second).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn enrolment_attempts_are_limited_per_address() {
    let server = TestServer::start_with(|c| c.page_limits.enrolments_per_hour = 4).await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await; // two requests of the four

    // Guessing an app's code is slowed down like everything else.
    let html = browser.page("/wallet/totp").await;
    let secret = between(&html, "id=\"totp-secret\">", "<").to_string();
    let seal = between(&html, "name=\"seal\" value=\"", "\"").to_string();
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
    let right = totp::code_at(
        &totp::secret_from_text(&secret).unwrap(),
        server.clock.now_ms() / 1000 / totp::STEP_SECS,
    );
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let guess = |code: &'static str| {
        let fields = [
            ("csrf", csrf.clone()),
            ("secret", secret.clone()),
            ("seal", seal.clone()),
            ("code", code.to_string()),
        ];
        let browser = &browser;
        async move {
            browser
                .http
                .post(format!("{}/wallet/totp", browser.base))
                .header("origin", &browser.base)
                .form(&fields)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(guess(wrong).await, 400);
    assert_eq!(guess(wrong).await, 400);
    assert_eq!(guess(wrong).await, 429);
    let (code, body) = browser.json("/webauthn/register/options", json!({})).await;
    assert_eq!(
        (code, &body["error"]["type"]),
        (429, &json!("rate_limited"))
    );
    assert!(!browser
        .page("/wallet")
        .await
        .contains("Authenticator app: enrolled"));
}

/// A session of `amount` (USD minor units) that names `customer`, as the API answers it.
async fn session_for(server: &TestServer, amount: i64, customer: &str) -> Value {
    Client::new()
        .post(format!("{}/v1/sessions", server.base_url))
        .bearer_auth(&server.test_key)
        .json(&json!({"amount": amount, "currency": "usd", "customer": customer}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The grant form's fields, as a payer leaves or changes them.
fn terms(per_call: &str, period_limit: &str) -> Value {
    json!({"perCall": per_call, "period": "day", "periodLimit": period_limit, "total": ""})
}

#[tokio::test]
async fn a_payer_grants_a_mandate_with_a_passkey_and_revokes_it_in_one_click() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;

    // The first call of this agent: a link, approved with the passkey.
    let first = session_for(&server, 45, "agent-42").await;
    let first_id = first["sessionId"].as_str().unwrap().to_string();
    assert_eq!(browser.state_of(&first_id).await, "approve");
    browser.approve(&mut authenticator, &first_id).await;
    let paid_page = browser.page(&format!("/checkout/{first_id}")).await;
    assert!(
        paid_page.contains("id=\"grant-form\""),
        "the paid checkout offers a mandate"
    );
    assert!(paid_page.contains("agent-42"));
    assert!(
        paid_page.contains("value=\"1.00\""),
        "prefilled: 1.00 a call"
    );
    assert!(
        paid_page.contains("value=\"5.00\""),
        "prefilled: 5.00 a day"
    );

    // One form, one tap: the terms are bound into the passkey's challenge.
    let mut start = terms("0.50", "1.00");
    start["sessionId"] = json!(first_id);
    start["days"] = json!("30");
    let (code, options) = browser.json("/webauthn/grant/options", start).await;
    assert_eq!(code, 200, "{options}");
    let mut finish = authenticator.assert(&options["publicKey"]);
    for (key, value) in terms("0.50", "1.00").as_object().unwrap() {
        finish[key] = value.clone();
    }
    finish["sessionId"] = json!(first_id);
    finish["challengeId"] = options["challengeId"].clone();
    finish["expiresAt"] = options["expiresAt"].clone();
    let (code, granted) = browser.json("/webauthn/grant/finish", finish).await;
    assert_eq!(code, 200, "{granted}");
    let mandate_id = granted["mandateId"].as_str().unwrap().to_string();
    assert!(browser
        .page(&format!("/checkout/{first_id}"))
        .await
        .contains("id=\"mandate-granted\""));

    // The next calls run without a link until the day's 1.00 is spent.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let next = session_for(&server, 45, "agent-42").await;
        statuses.push(next["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["paid", "paid", "pending"]);
    let wallet = browser.page("/wallet").await;
    assert!(wallet.contains(&format!(
        "data-mandate=\"{mandate_id}\" data-status=\"active\""
    )));
    assert!(
        wallet.contains("under your mandate"),
        "the history marks its charges"
    );
    assert!(wallet.contains("0.90 USD this day"), "{wallet}");

    // Revoking is one click, effective at once.
    let csrf = browser.csrf().await;
    let revoked = browser
        .form(
            &format!("/wallet/mandates/{mandate_id}/revoke"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(revoked.status(), 303);
    assert!(browser.page("/wallet").await.contains(&format!(
        "data-mandate=\"{mandate_id}\" data-status=\"revoked\""
    )));
    server.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(
        session_for(&server, 45, "agent-42").await["status"],
        "pending"
    );
}

#[tokio::test]
async fn a_grant_counts_only_for_the_terms_its_passkey_signed_and_only_for_its_payer() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let mut authenticator = SoftAuthenticator::new(&browser.base);
    browser.register(&mut authenticator).await;
    let first = session_for(&server, 45, "agent-9").await;
    let first_id = first["sessionId"].as_str().unwrap().to_string();
    browser.approve(&mut authenticator, &first_id).await;

    // Signed for 0.50 a call; sent as 50.00 a call: refused, nothing granted.
    let mut start = terms("0.50", "1.00");
    start["sessionId"] = json!(first_id);
    start["days"] = json!("30");
    let (_, options) = browser.json("/webauthn/grant/options", start).await;
    let mut finish = authenticator.assert(&options["publicKey"]);
    for (key, value) in terms("50.00", "100.00").as_object().unwrap() {
        finish[key] = value.clone();
    }
    finish["sessionId"] = json!(first_id);
    finish["challengeId"] = options["challengeId"].clone();
    finish["expiresAt"] = options["expiresAt"].clone();
    let (code, body) = browser.json("/webauthn/grant/finish", finish).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        session_for(&server, 45, "agent-9").await["status"],
        "pending"
    );

    // Bad terms are refused with the field named, before any prompt.
    for (bad, field) in [
        (
            json!({"perCall": "", "period": "none", "periodLimit": "", "total": ""}),
            "limits",
        ),
        (terms("0.50", ""), "periodLimit"),
        (terms("0.001", "1.00"), "perCallLimit"),
        (
            json!({"perCall": "1", "period": "fortnight", "periodLimit": "2"}),
            "period",
        ),
    ] {
        let mut start = bad;
        start["sessionId"] = json!(first_id);
        start["days"] = json!("30");
        let (code, body) = browser.json("/webauthn/grant/options", start).await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }

    // Another payer cannot grant from a payment they did not make.
    let stranger = Browser::new(&server);
    let mut strangers_key = SoftAuthenticator::new(&stranger.base);
    stranger.register(&mut strangers_key).await;
    let mut start = terms("0.50", "1.00");
    start["sessionId"] = json!(first_id);
    start["days"] = json!("30");
    let (code, _) = stranger.json("/webauthn/grant/options", start).await;
    assert_eq!(code, 403);
    assert!(!stranger
        .page(&format!("/checkout/{first_id}"))
        .await
        .contains("grant-form"));
}
