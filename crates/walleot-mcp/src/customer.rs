//! The customer reference a payment names, which mandates are granted for.
//!
//! A server that authenticates its users names each one ([`crate::Walleot::identify`]);
//! a stdio server serves one user, its installation's, whose reference is kept in a
//! file so that it stays the same from one run to the next.

use std::path::PathBuf;

/// What the service accepts: 1 to 255 printable ASCII characters.
pub fn is_valid(reference: &str) -> bool {
    (1..=255).contains(&reference.len()) && reference.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// A subject as a customer reference: itself where the service accepts it, else its
/// digest (a subject of other characters stays one stable reference).
pub fn of_subject(subject: &str) -> String {
    if is_valid(subject) {
        subject.to_string()
    } else {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(subject.as_bytes()))
        )
    }
}

/// Where the installation's reference is kept: `$WALLEOT_STATE_DIR`, else
/// `$XDG_STATE_HOME/walleot`, else `~/.local/state/walleot`; the file `customer` there.
pub fn installation_file() -> Option<PathBuf> {
    let dir = std::env::var_os("WALLEOT_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("walleot")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/walleot"))
        })?;
    Some(dir.join("customer"))
}

/// This installation's reference (`inst_` and 24 random characters), made on first use
/// and read back afterwards; `None` where no file can be kept.
pub fn installation_customer() -> Option<String> {
    let file = installation_file()?;
    if let Ok(kept) = std::fs::read_to_string(&file) {
        let kept = kept.trim();
        if is_valid(kept) {
            return Some(kept.to_string());
        }
    }
    use rand::RngCore;
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    use base64::Engine;
    let fresh = format!(
        "inst_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let dir = file.parent()?;
    std::fs::create_dir_all(dir).ok()?;
    // Made once: a process that lost the race reads the winner's reference.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
    {
        Ok(mut out) => {
            use std::io::Write;
            out.write_all(fresh.as_bytes()).ok()?;
            Some(fresh)
        }
        Err(_) => std::fs::read_to_string(&file)
            .ok()
            .map(|kept| kept.trim().to_string())
            .filter(|kept| is_valid(kept)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_become_references_the_service_accepts() {
        assert_eq!(of_subject("user-42"), "user-42");
        let odd = of_subject("ユーザー");
        assert!(odd.starts_with("sha256:") && is_valid(&odd));
        assert_eq!(odd, of_subject("ユーザー"), "stable");
        assert!(!is_valid("") && !is_valid(&"x".repeat(256)) && !is_valid("a\nb"));
    }
}
