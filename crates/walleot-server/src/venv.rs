//! Python tools for tests that drive the service or an SDK from outside (the official
//! `walleot` package, the official MCP client, Schemathesis): each in a virtual
//! environment of its own, created once and reused while its packages stay the same.
//! Enabled by the `test-support` feature.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `bin` folder of a virtual environment named `name` under `dir` (a test's
/// `CARGO_TARGET_TMPDIR`) with exactly `packages` installed by pip; created on first use.
pub fn python_tools(dir: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let root = dir.join(name);
    let bin = root.join("bin");
    let marker = root.join(format!("installed-{}", packages.join("-")));
    if !marker.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&root)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv {} failed", root.display());
        let pip = Command::new(bin.join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install {packages:?} failed");
        std::fs::write(&marker, b"").expect("the marker of an installed environment");
    }
    bin
}
