//! Second factors of payers: passkeys (WebAuthn) and, where passkeys are unavailable,
//! TOTP codes from an authenticator app.

pub mod totp;
pub mod webauthn;
