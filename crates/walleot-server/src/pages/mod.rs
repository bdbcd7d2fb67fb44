//! The payer's pages: checkout (`/checkout/{id}`), the wallet (`/wallet`), and the JSON
//! endpoints of the passkey ceremonies (`/webauthn/…`).
//!
//! Pages are rendered on the server from the templates in `templates/`. A payer is
//! recognised by the `walleot_payer` cookie (HttpOnly, SameSite=Lax, Secure over
//! https), whose token is stored hashed. Every state-changing request carries a CSRF
//! token derived from a per-browser cookie; every page is sent with a restrictive
//! Content-Security-Policy and may not be framed.

mod checkout;
mod passkeys;
mod wallet;

use crate::app::AppState;
use crate::domain::factors::webauthn::RelyingParty;
use crate::domain::payers::Payer;
use crate::ratelimit::Bucket;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use minijinja::{context, Environment, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PAYER_COOKIE: &str = "walleot_payer";
const CSRF_COOKIE: &str = "walleot_csrf";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the pages need beyond the domain services.
pub struct PageContext {
    /// Keys the CSRF tokens and the seals of TOTP enrolment forms.
    secret: Vec<u8>,
    /// `None` when the public URL has no host name (passkeys then cannot work).
    pub rp: Option<RelyingParty>,
    secure_cookies: bool,
    limits: PageLimits,
}

/// Requests per client address per hour on the forms that make wallets, add factors,
/// approve payments or add money: enough for people, not for scripts.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// New wallets (by passkey or authenticator app).
    pub wallets_per_hour: u32,
    /// Passkey and authenticator-app enrolment requests (a passkey takes two).
    pub enrolments_per_hour: u32,
    /// Approval requests: passkey (two each), app code, the pay button.
    pub approvals_per_hour: u32,
    /// Voucher redemptions and test credits.
    pub top_ups_per_hour: u32,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            wallets_per_hour: 10,
            enrolments_per_hour: 30,
            approvals_per_hour: 120,
            top_ups_per_hour: 30,
        }
    }
}

impl PageLimits {
    fn of(&self, bucket: Bucket) -> u32 {
        match bucket {
            Bucket::Wallets => self.wallets_per_hour,
            Bucket::Enrolments => self.enrolments_per_hour,
            Bucket::Approvals => self.approvals_per_hour,
            Bucket::TopUps => self.top_ups_per_hour,
            Bucket::Sessions | Bucket::Status | Bucket::Anonymous => u32::MAX,
        }
    }
}

/// The window of the page limits.
const LIMIT_WINDOW_SECS: u32 = 3600;

/// Spends one request of `client` from a page budget; a spent budget is refused with
/// the wait until it refills.
pub async fn spend(state: &AppState, bucket: Bucket, client: &ClientAddr) -> Result<(), PageError> {
    let limit = state.pages.limits.of(bucket);
    let now = state.clock.now_ms();
    let decision = state
        .limiter
        .check_budget(bucket, limit, LIMIT_WINDOW_SECS, &client.0, now)
        .await;
    if decision.allowed {
        Ok(())
    } else {
        Err(PageError::RateLimited {
            retry_after_secs: decision.reset_secs,
        })
    }
}

/// The address a request came from, as the page limits count it: an IPv6 address by
/// its /64, the block one subscriber usually holds.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        use std::net::IpAddr;
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let key = match ip {
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            Some(IpAddr::V4(v4)) => v4.to_string(),
            None => "unknown".into(),
        };
        Ok(ClientAddr(key))
    }
}

impl PageContext {
    pub fn new(public_url: &str, secret: Vec<u8>, limits: PageLimits) -> Self {
        let rp = RelyingParty::from_public_url(public_url)
            .filter(|rp| rp.id.parse::<std::net::IpAddr>().is_err() && !rp.id.starts_with('['));
        PageContext {
            secret,
            rp,
            secure_cookies: crate::app::is_https(public_url),
            limits,
        }
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn cookie(&self, name: &str, value: &str, max_age_secs: i64, same_site: &str) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age_secs}{secure}"
        ))
        .expect("cookie values are base64url")
    }
}

/// The page templates, parsed once; they are part of the binary.
fn templates() -> &'static Environment<'static> {
    static TEMPLATES: std::sync::LazyLock<Environment<'static>> = std::sync::LazyLock::new(|| {
        let mut templates = Environment::new();
        for (name, source) in [
            ("layout.html", include_str!("../../templates/layout.html")),
            (
                "checkout.html",
                include_str!("../../templates/checkout.html"),
            ),
            ("wallet.html", include_str!("../../templates/wallet.html")),
            (
                "no_wallet.html",
                include_str!("../../templates/no_wallet.html"),
            ),
            ("totp.html", include_str!("../../templates/totp.html")),
            ("message.html", include_str!("../../templates/message.html")),
        ] {
            templates
                .add_template(name, source)
                .expect("the page templates parse");
        }
        templates
    });
    &TEMPLATES
}

/// An HTML answer from a template; a template that fails to render is logged and
/// answered with a bare 500.
fn render_html(status: StatusCode, template: &str, values: Value) -> Response {
    match templates()
        .get_template(template)
        .and_then(|t| t.render(values))
    {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, template, "a page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(checkout::routes())
        .merge(wallet::routes())
        .merge(passkeys::routes())
        .route("/assets/walleot.js", get(script))
        .route("/assets/walleot.css", get(stylesheet))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/walleot.js"),
    )
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/walleot.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Who is on the page: the signed-in payer, if any, and the browser's CSRF cookie.
/// Extracted from every page request; a failing store renders the error page.
pub struct Visitor {
    pub payer: Option<Payer>,
    login_token: Option<String>,
    csrf_cookie: String,
    new_csrf_cookie: bool,
    /// The request names no `Origin`, or this site's.
    same_origin: bool,
    set_cookies: Vec<HeaderValue>,
}

impl axum::extract::FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, PageError> {
        Visitor::from_headers(state, &parts.headers).await
    }
}

impl Visitor {
    async fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Self, PageError> {
        let login_token = cookie_value(headers, PAYER_COOKIE).map(str::to_string);
        let payer = match &login_token {
            Some(token) => state.factors.signed_in(token).await?,
            None => None,
        };
        let (csrf_cookie, new_csrf_cookie) = match cookie_value(headers, CSRF_COOKIE) {
            Some(v) if v.len() >= 32 => (v.to_string(), false),
            _ => (
                URL_SAFE_NO_PAD.encode(crate::domain::factors::webauthn::random_bytes(32)),
                true,
            ),
        };
        let same_origin = match (headers.get(header::ORIGIN), &state.pages.rp) {
            (Some(origin), Some(rp)) => origin.to_str().map(|o| o == rp.origin).unwrap_or(false),
            _ => true,
        };
        Ok(Visitor {
            payer,
            login_token,
            csrf_cookie,
            new_csrf_cookie,
            same_origin,
            set_cookies: Vec::new(),
        })
    }

    pub fn csrf_token(&self, state: &AppState) -> String {
        state.pages.mac("csrf", &self.csrf_cookie)
    }

    /// Refuses a state change whose token does not match this browser, or that comes
    /// from another site.
    pub fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), PageError> {
        let expected = self.csrf_token(state);
        let same =
            !self.new_csrf_cookie && expected.as_bytes().ct_eq(token.as_bytes()).unwrap_u8() == 1;
        if same && self.same_origin {
            Ok(())
        } else {
            Err(PageError::Forbidden)
        }
    }

    /// Signs `payer` in on this browser.
    pub async fn sign_in(&mut self, state: &AppState, payer: Payer) -> Result<(), PageError> {
        let token = state.factors.sign_in(&payer.id).await?;
        let max_age = crate::domain::factors::LOGIN_MS / 1000;
        self.set_cookies
            .push(state.pages.cookie(PAYER_COOKIE, &token, max_age, "Lax"));
        self.payer = Some(payer);
        Ok(())
    }

    pub async fn sign_out(&mut self, state: &AppState) -> Result<(), PageError> {
        if let Some(token) = &self.login_token {
            state.factors.sign_out(token).await?;
        }
        self.set_cookies
            .push(state.pages.cookie(PAYER_COOKIE, "", 0, "Lax"));
        self.payer = None;
        Ok(())
    }

    /// Adds the cookies this visit set to an answer.
    pub fn finish(&self, state: &AppState, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if self.new_csrf_cookie {
            headers.append(
                header::SET_COOKIE,
                state
                    .pages
                    .cookie(CSRF_COOKIE, &self.csrf_cookie, 365 * 24 * 3600, "Strict"),
            );
        }
        for cookie in &self.set_cookies {
            headers.append(header::SET_COOKIE, cookie.clone());
        }
        response
    }

    /// Renders a template with the values every page needs.
    pub fn render(
        &self,
        state: &AppState,
        status: StatusCode,
        template: &str,
        values: Value,
    ) -> Response {
        let full = context! {
            csrf => self.csrf_token(state),
            signed_in => self.payer.is_some(),
            ..values
        };
        self.finish(state, render_html(status, template, full))
    }

    /// A 303 to a path of this site; a path built from input that is not one leads to
    /// the wallet instead (and never to a header that cannot be written).
    pub fn redirect(&self, state: &AppState, to: &str) -> Response {
        let to = safe_return(Some(to), "/wallet");
        self.finish(state, Redirect::to(&to).into_response())
    }
}

/// Only paths of this site may be returned to; anything else gives `fallback`.
pub fn safe_return(raw: Option<&str>, fallback: &str) -> String {
    raw.and_then(local_path)
        .unwrap_or_else(|| fallback.to_string())
}

/// `raw` as a path and query of this site, or `None`. Browsers drop tabs and line
/// breaks from URLs and read backslashes as slashes, so `/\t/host` or `/\host` would
/// lead to another host: such characters are refused outright. What remains is resolved
/// against an origin of our own, which it must keep, and dot segments that fold into
/// `//host` are refused after resolution.
fn local_path(raw: &str) -> Option<String> {
    const MAX_LEN: usize = 2048;
    let plain = |c: char| !(c.is_control() || c.is_whitespace() || c == '\\');
    if raw.len() > MAX_LEN || !raw.starts_with('/') || !raw.chars().all(plain) {
        return None;
    }
    let origin = url::Url::parse("http://walleot.invalid/").expect("a valid URL");
    let resolved = origin.join(raw).ok()?;
    if resolved.origin() != origin.origin() {
        return None;
    }
    let mut path = resolved.path().to_string();
    if let Some(query) = resolved.query() {
        path.push('?');
        path.push_str(query);
    }
    let local = path.starts_with('/') && !path.starts_with("//") && path.chars().all(plain);
    local.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::{safe_return, PageContext, PageLimits};

    #[test]
    fn cookies_are_secure_whenever_the_public_url_is_https_in_any_case() {
        for (url, secure) in [
            ("https://pay.example", true),
            ("HTTPS://pay.example", true),
            ("http://localhost:8080", false),
        ] {
            let pages = PageContext::new(url, vec![7; 32], PageLimits::default());
            assert_eq!(pages.secure_cookies, secure, "{url}");
        }
    }

    #[test]
    fn return_paths_of_this_site_are_kept_in_a_normal_form() {
        for (raw, kept) in [
            ("/wallet", "/wallet"),
            ("/checkout/sess_1?notice=x", "/checkout/sess_1?notice=x"),
            ("/a/../wallet", "/wallet"),
            ("/wallet#top", "/wallet"),
            ("/%09/x", "/%09/x"),
            ("/caf\u{e9}", "/caf%C3%A9"),
        ] {
            assert_eq!(safe_return(Some(raw), "/fallback"), kept, "{raw:?}");
        }
        for raw in ["//x", "/\\x", "/\t/x", "/..//x", "x", "https://x/"] {
            assert_eq!(safe_return(Some(raw), "/fallback"), "/fallback", "{raw:?}");
        }
        assert_eq!(safe_return(None, "/fallback"), "/fallback");
        assert_eq!(safe_return(Some(&"/a".repeat(2000)), "/f"), "/f");
    }
}

/// Why a page could not be shown; each renders as a page of its own.
#[derive(Debug)]
pub enum PageError {
    NotFound,
    /// A missing or wrong CSRF token, or a request from another site.
    Forbidden,
    BadRequest(String),
    /// A page budget of this client address is spent.
    RateLimited {
        retry_after_secs: u64,
    },
    Internal,
}

/// The one place where domain refusals become pages: a missing thing is the "no such
/// payment" page, a failing store the "nothing was charged" page, and any other refusal
/// says what was wrong, in the domain's words without the field name.
impl From<crate::domain::DomainError> for PageError {
    fn from(e: crate::domain::DomainError) -> Self {
        use crate::domain::DomainError;
        match e {
            DomainError::NotFound(_) => PageError::NotFound,
            DomainError::Store(e) => {
                tracing::error!(error = %e, "storage failed");
                PageError::Internal
            }
            DomainError::Invalid { message, .. } => PageError::BadRequest(message),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

/// A state-changing form of a page, its CSRF token and origin checked: the visitor
/// and the fields. A form that does not parse is refused like a forged one.
pub struct CheckedForm<T> {
    pub visitor: Visitor,
    pub form: T,
}

/// A form that carries the page's CSRF token.
pub trait CsrfForm: serde::de::DeserializeOwned + Send {
    fn csrf(&self) -> &str;
}

/// Implements [`CsrfForm`] for forms with a `csrf` field.
macro_rules! csrf_forms {
    ($($form:ty),* $(,)?) => {
        $(impl $crate::pages::CsrfForm for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}
pub(crate) use csrf_forms;

impl<T: CsrfForm> axum::extract::FromRequest<AppState> for CheckedForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        use axum::extract::FromRequestParts;
        let (mut parts, body) = req.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, state).await?;
        let axum::Form(form) =
            axum::Form::<T>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(|_| PageError::Forbidden)?;
        visitor.check_csrf(state, form.csrf())?;
        Ok(CheckedForm { visitor, form })
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "No such payment",
                "This link does not lead to a payment. Check that it was copied whole.".to_string(),
            ),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Please try again",
                "This form was sent from an old or foreign page. Reload the page and try again."
                    .to_string(),
            ),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "That did not work", m.clone()),
            PageError::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!(
                    "Too many attempts came from your network in the last hour. Nothing was \
                     changed. Please try again in {}.",
                    wait_text(*retry_after_secs)
                ),
            ),
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Nothing was charged. Please try again in a moment.".to_string(),
            ),
        };
        let mut response = render_html(status, "message.html", context! { title, text });
        if let PageError::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// A wait in words: "1 minute", "12 minutes", "30 seconds".
pub fn wait_text(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} seconds"),
        60..=119 => "1 minute".into(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

/// A path parameter of a page; a malformed one reads as a missing payment.
pub struct PagePath(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PagePath {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PagePath(v))
            .map_err(|_| PageError::NotFound)
    }
}
