use reqwest::{Method, Response};
use serde_json::{json, Value};
use walleot_server::startup::Config;
pub use walleot_server::testing::TestServer;

pub struct App {
    pub server: TestServer,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> App {
    App {
        server: TestServer::start_with(configure).await,
        http: reqwest::Client::new(),
    }
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url)
    }

    pub fn key(&self) -> &str {
        &self.server.test_key
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        req.send().await.expect("request reaches the service")
    }

    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(key), Some(&body.to_string()))
            .await
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.request(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str) -> Response {
        self.request(Method::POST, path, Some(key), None).await
    }

    /// Creates a session with `key` and returns its answer, asserting success.
    pub async fn create_session_with(&self, key: &str, body: Value) -> Value {
        let response = self.post_json("/v1/sessions", key, &body).await;
        assert_eq!(response.status(), 200, "creating a session");
        response.json().await.unwrap()
    }

    pub async fn create_session(&self) -> String {
        let session = self
            .create_session_with(self.key(), json!({"amount": 200, "currency": "usd"}))
            .await;
        session["sessionId"].as_str().unwrap().to_string()
    }

    /// Pays session `id` as a new payer (with its sandbox credits) approving without a
    /// second factor; answers the payer's id.
    pub async fn pay_as_new_payer(&self, id: &str) -> String {
        let wallets = self.server.wallets();
        let payer = wallets.register().await.unwrap();
        wallets
            .pay(
                &self.server.session(id).await,
                &payer.id,
                walleot_server::domain::payers::ApprovalMethod::Auto,
                None,
            )
            .await
            .unwrap();
        payer.id
    }

    /// The session as `GET /v1/sessions/{id}` answers it.
    pub async fn read(&self, id: &str) -> Value {
        self.get(&format!("/v1/sessions/{id}"), self.key())
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn status_of(&self, id: &str) -> String {
        let response = self.get(&format!("/v1/sessions/{id}"), self.key()).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["status"].as_str().unwrap().to_string()
    }
}

/// Asserts an answer in the API's error shape and returns its message.
pub async fn assert_error(response: Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["type"], kind, "error type in {body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string();
    assert!(!message.is_empty());
    assert_eq!(body.as_object().unwrap().len(), 1, "only `error` in {body}");
    message
}
