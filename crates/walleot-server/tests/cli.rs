//! The `walleot` binary as an operator uses it: each test runs the real executable on
//! a fresh database file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("ops.db").display())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_walleot"));
        cmd.current_dir(self.dir.path())
            .env_remove("WALLEOT_DATABASE_URL")
            .env_remove("WALLEOT_KEY_SECRET")
            .env_remove("WALLEOT_LISTEN")
            .env("RUST_LOG", "error");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .args(["--database-url", &self.database_url()])
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A `walleot serve` child process, killed when dropped.
struct Served {
    child: Child,
    base: String,
    stdout: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(work: &Workdir, extra: &[&str]) -> Served {
    let mut child = work
        .command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut base = None;
    // The banner ends with the curl line (first start) or the hint to create keys.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if let Some(rest) = line.strip_prefix("walleot listening on ") {
            base = Some(rest.split_whitespace().next().unwrap().to_string());
        }
        let done = line.contains("curl") || line.contains("walleot keys create");
        lines.push(line);
        if done {
            break;
        }
    }
    Served {
        child,
        base: base.expect("serve printed its address"),
        stdout: lines,
    }
}

fn is_key(line: &str, mode: &str) -> bool {
    line.starts_with(&format!("sk_{mode}_"))
        && line.len() == 44
        && line[8..].bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn status_with(base: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/v1/sessions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn keys_create_prints_only_the_key_even_on_a_fresh_database() {
    let work = Workdir::new();
    for mode in ["test", "live"] {
        let out = work.ok(&["keys", "create", "--mode", mode]);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(is_key(lines[0], mode), "{out}");
    }
    let list = work.ok(&["keys", "list"]);
    assert_eq!(list.lines().count(), 3, "a header and two keys: {list}");
    assert!(list.contains("Demo merchant"));
    let merchants = work.ok(&["merchants", "list"]);
    assert_eq!(
        merchants.lines().count(),
        2,
        "one merchant was created: {merchants}"
    );
}

#[test]
fn the_key_list_never_shows_a_secret() {
    let work = Workdir::new();
    let key = work.ok(&["keys", "create", "--mode", "test"]);
    let list = work.ok(&["keys", "list"]);
    assert!(!list.contains(key.trim()));
    assert!(
        list.contains(&key[..12]),
        "the display prefix helps recognise it: {list}"
    );
}

#[test]
fn merchants_are_created_by_name_and_keys_created_for_them() {
    let work = Workdir::new();
    let id = work.ok(&["merchants", "create", "Acme Tools"]);
    assert!(id.trim().starts_with("mer_"), "{id}");
    assert!(is_key(
        work.ok(&[
            "keys",
            "create",
            "--mode",
            "live",
            "--merchant",
            "Acme Tools"
        ])
        .trim(),
        "live"
    ));
    assert!(is_key(
        work.ok(&["keys", "create", "--mode", "test", "--merchant", id.trim()])
            .trim(),
        "test"
    ));
    let duplicate = work.run(&["merchants", "create", "Acme Tools"]);
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    work.ok(&["merchants", "create", "Second"]);
    let ambiguous = work.run(&["keys", "create", "--mode", "test"]);
    assert!(
        !ambiguous.status.success(),
        "with several merchants one must be named"
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let work = Workdir::new();
    for args in [
        &["keys", "create", "--mode", "prod"][..],
        &["keys", "create"],
        &["keys", "create", "--mode", "test", "--merchant", "Nobody"],
        &["keys", "revoke", "key_doesnotexist"],
        &["merchants", "create", ""],
        &["frobnicate"],
    ] {
        let out = work.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!out.stderr.is_empty(), "{args:?} said nothing");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
    let out = work
        .command()
        .args(["keys", "list", "--database-url", "postgres://nowhere/db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite"));
}

#[test]
fn help_explains_every_command() {
    let work = Workdir::new();
    let top = String::from_utf8(work.command().arg("--help").output().unwrap().stdout).unwrap();
    for word in ["serve", "keys", "merchants", "--database-url"] {
        assert!(top.contains(word), "--help lacks {word}");
    }
    let serve = String::from_utf8(
        work.command()
            .args(["serve", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for word in [
        "--listen",
        "--public-url",
        "WALLEOT_LISTEN",
        "--rate-limit-sessions",
        "--session-ttl",
    ] {
        assert!(serve.contains(word), "serve --help lacks {word}");
    }
    let keys = String::from_utf8(
        work.command()
            .args(["keys", "create", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(keys.contains("--mode") && keys.contains("--merchant"));
}

#[tokio::test]
async fn first_start_prints_a_working_test_key_and_later_starts_do_not() {
    let work = Workdir::new();
    let served = serve(&work, &["--database-url", &work.database_url()]);
    let key = served
        .stdout
        .iter()
        .map(|l| l.trim())
        .find(|l| is_key(l, "test"))
        .expect("a test key in the banner")
        .to_string();
    let curl = served.stdout.iter().find(|l| l.contains("curl")).unwrap();
    assert!(curl.contains(&key) && curl.contains(&format!("{}/v1/sessions", served.base)));
    assert_eq!(status_with(&served.base, &key).await, 200);
    drop(served);

    let again = serve(&work, &["--database-url", &work.database_url()]);
    assert!(
        !again.stdout.iter().any(|l| l.contains("sk_test_")),
        "{:?}",
        again.stdout
    );
    assert_eq!(
        status_with(&again.base, &key).await,
        200,
        "the key survives a restart"
    );
}

#[tokio::test]
async fn serve_defaults_to_walleot_db_in_the_working_directory_and_keys_can_be_revoked() {
    let work = Workdir::new();
    let served = serve(&work, &[]);
    assert!(work.dir.path().join("walleot.db").exists());
    let out = work
        .command()
        .args(["keys", "create", "--mode", "test"])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        status_with(&served.base, &key).await,
        200,
        "a key created beside a running service works"
    );
    let list = String::from_utf8(
        work.command()
            .args(["keys", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = list
        .lines()
        .find(|l| l.contains(&key[..12]))
        .and_then(|l| l.split_whitespace().next())
        .expect("the new key is listed")
        .to_string();
    let revoked = work
        .command()
        .args(["keys", "revoke", &id])
        .output()
        .unwrap();
    assert!(revoked.status.success());
    assert_eq!(status_with(&served.base, &key).await, 401);
}

#[tokio::test]
async fn public_url_sets_the_base_of_checkout_links() {
    let work = Workdir::new();
    let key = work
        .ok(&["keys", "create", "--mode", "test"])
        .trim()
        .to_string();
    let served = serve(
        &work,
        &[
            "--database-url",
            &work.database_url(),
            "--public-url",
            "https://pay.example.test/",
        ],
    );
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/sessions", served.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"amount": 200, "currency": "usd"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = session["sessionId"].as_str().unwrap();
    assert_eq!(
        session["url"],
        format!("https://pay.example.test/checkout/{id}")
    );
}

#[test]
fn vouchers_create_prints_one_code_a_line() {
    let work = Workdir::new();
    let out = work.ok(&[
        "vouchers",
        "create",
        "--amount",
        "500",
        "--currency",
        "USD",
        "--count",
        "3",
    ]);
    let codes: Vec<_> = out.lines().collect();
    assert_eq!(codes.len(), 3, "{out}");
    for code in &codes {
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3, "{code}");
    }
    assert_ne!(codes[0], codes[1]);
    for bad in [
        &["vouchers", "create", "--amount", "0", "--currency", "usd"][..],
        &["vouchers", "create", "--amount", "5", "--currency", "zzz"],
        &[
            "vouchers",
            "create",
            "--amount",
            "5",
            "--currency",
            "usd",
            "--count",
            "0",
        ],
    ] {
        let out = work.run(bad);
        assert!(!out.status.success(), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn ledger_verify_passes_on_a_sound_ledger_and_fails_on_a_tampered_one() {
    let work = Workdir::new();
    let key = work
        .ok(&["keys", "create", "--mode", "test"])
        .trim()
        .to_string();
    let served = serve(&work, &["--database-url", &work.database_url()]);
    let http = reqwest::Client::new();
    for amount in [100, 250] {
        let session: serde_json::Value = http
            .post(format!("{}/v1/sessions", served.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({"amount": amount, "currency": "usd"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = session["sessionId"].as_str().unwrap();
        let paid = http
            .post(format!("{}/v1/test_helpers/sessions/{id}/pay", served.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status(), 200);
    }
    let sound = work.ok(&["ledger", "verify"]);
    assert!(sound.contains("consistent"), "{sound}");

    let pool = sqlx::SqlitePool::connect(&work.database_url())
        .await
        .unwrap();
    sqlx::query("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE kind = 'merchant'")
        .execute(&pool)
        .await
        .unwrap();
    let tampered = work.run(&["ledger", "verify"]);
    assert!(!tampered.status.success());
    let report = String::from_utf8_lossy(&tampered.stdout);
    assert!(report.contains("transfers give"), "{report}");
    assert!(report.contains("sum to 1"), "{report}");
}

#[tokio::test]
async fn the_sandbox_credit_of_new_test_wallets_is_configurable() {
    let work = Workdir::new();
    let served = serve(
        &work,
        &[
            "--database-url",
            &work.database_url(),
            "--sandbox-credit",
            "3",
        ],
    );
    let port = served.base.rsplit(':').next().unwrap();
    let payer =
        walleot_server::testing::CheckoutPayer::register(&format!("http://localhost:{port}")).await;
    let wallet = payer.page("/wallet").await;
    assert!(wallet.contains("3.00 USD"), "{wallet}");
    assert!(!wallet.contains("10.00 USD"));
    let refused = work.run(&["serve", "--listen", "127.0.0.1:0", "--sandbox-credit", "-1"]);
    assert!(!refused.status.success());
}
