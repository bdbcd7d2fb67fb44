//! Payers: the people behind AI agents, with their second factors (passkeys, TOTP),
//! their browser logins, the approvals of their payments, and vouchers.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payer {
    pub id: String,
    pub created_at: i64,
    /// Second-factor failures in a row.
    pub failed_attempts: i64,
    /// Approvals are refused until this instant.
    pub locked_until: i64,
}

impl Payer {
    /// Whether approvals are refused at `now` after failed second factors.
    pub fn is_locked(&self, now_ms: i64) -> bool {
        self.locked_until > now_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    pub credential_id: Vec<u8>,
    pub payer_id: String,
    /// The credential as `webauthn-rs-core` keeps it, in JSON (any supported algorithm);
    /// passkeys registered before that hold the bare SEC1 point of their P-256 key.
    pub public_key: Vec<u8>,
    pub sign_count: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub payer_id: String,
    pub secret: Vec<u8>,
    /// Set once the payer has entered a first valid code.
    pub confirmed: bool,
    pub last_step: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum ChallengePurpose {
    Register,
    Approve,
    /// Granting a mandate from a paid checkout.
    Grant,
}

impl ChallengePurpose {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An open WebAuthn ceremony.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub id: String,
    pub purpose: ChallengePurpose,
    pub payer_id: Option<String>,
    pub session_id: Option<String>,
    pub challenge: Vec<u8>,
    pub nonce: Vec<u8>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum ApprovalMethod {
    /// At or under the payer's threshold: no click.
    Auto,
    Passkey,
    Totp,
    /// The test-mode helper of the API, acting as a sandbox payer.
    TestHelper,
    /// Paid at creation under the payer's mandate (its id is the evidence).
    Mandate,
}

impl ApprovalMethod {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub session_id: String,
    pub payer_id: String,
    pub method: ApprovalMethod,
    pub evidence: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    pub id: String,
    /// SHA-256 of the code; the code itself is shown once, when created.
    pub code_hash: String,
    pub amount: i64,
    pub book: crate::domain::ledger::Book,
    pub created_at: i64,
    pub redeemed_by: Option<String>,
    pub redeemed_at: Option<i64>,
}
