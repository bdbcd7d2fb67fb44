//! The `walleot` binary as an operator uses it: each test runs the real executable on
//! a fresh database file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

struct Workdir {
    dir: tempfile::TempDir,
    /// A SQLite file in `dir`, or a schema of the run's PostgreSQL.
    database_url: String,
}

impl Workdir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = walleot_server::testing::test_database_url(dir.path());
        Workdir { dir, database_url }
    }

    fn database_url(&self) -> String {
        self.database_url.clone()
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
    // Its log, to show if it fails to start.
    let log = tempfile::NamedTempFile::new_in(work.dir.path()).unwrap();
    let mut child = work
        .command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
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
        base: base.unwrap_or_else(|| {
            let said = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!("serve printed no address; it said: {said}")
        }),
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
fn signing_keys_rotate_adds_a_key_that_signs_first_and_keeps_the_old_ones() {
    let work = Workdir::new();
    assert_eq!(
        work.ok(&["signing-keys", "list"]),
        "",
        "none before first use"
    );
    let first = work.ok(&["signing-keys", "rotate"]);
    let second = work.ok(&["signing-keys", "rotate"]);
    for kid in [&first, &second] {
        assert!(kid.trim().starts_with("rk_"), "{kid}");
    }
    assert_ne!(first, second);
    let listed: Vec<String> = work
        .ok(&["signing-keys", "list"])
        .lines()
        .map(|line| line.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(listed, [second.trim(), first.trim()], "newest first");
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
        .args(["keys", "list", "--database-url", "mysql://nowhere/db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("sqlite://") && said.contains("postgres://"),
        "{said}"
    );
    // A PostgreSQL that is not there: a clear error, not a hang.
    let started = std::time::Instant::now();
    let out = work
        .command()
        .args([
            "keys",
            "list",
            "--database-url",
            "postgres://walleot@127.0.0.1:1/db",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("opening the database"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(20));
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

    walleot_server::testing::execute_sql(
        &work.database_url(),
        "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE kind = 'merchant'",
    )
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

/// Two `walleot serve` processes on the work directory's database, started at once.
fn serve_two(work: &Workdir, extra: &[&str]) -> (Served, Served) {
    let url = work.database_url();
    let args: Vec<&str> = ["--database-url", url.as_str()]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    std::thread::scope(|s| {
        let one = s.spawn(|| serve(work, &args));
        let two = s.spawn(|| serve(work, &args));
        (one.join().unwrap(), two.join().unwrap())
    })
}

/// Limits high enough that a load test never meets them.
const NO_LIMITS: [&str; 4] = [
    "--rate-limit-sessions",
    "1000000",
    "--rate-limit-status",
    "1000000",
];

#[tokio::test]
async fn two_instances_start_together_and_a_revoked_key_stops_on_both_at_once() {
    let work = Workdir::new();
    // On an empty database: both create the schema and the demo merchant, one each time.
    let (one, two) = serve_two(&work, &[]);
    let key = work
        .ok(&["keys", "create", "--mode", "test"])
        .trim()
        .to_string();
    assert_eq!(status_with(&one.base, &key).await, 200);
    assert_eq!(status_with(&two.base, &key).await, 200);
    let list = work.ok(&["keys", "list"]);
    let id = list
        .lines()
        .find(|l| l.contains(&key[..12]))
        .and_then(|l| l.split_whitespace().next())
        .expect("the key is listed")
        .to_string();
    work.ok(&["keys", "revoke", &id]);
    assert_eq!(status_with(&one.base, &key).await, 401);
    assert_eq!(status_with(&two.base, &key).await, 401);
    let merchants = work.ok(&["merchants", "list"]);
    let rows = merchants.lines().filter(|l| l.starts_with("mer_")).count();
    assert_eq!(rows, 1, "{merchants}");
}

/// One paid session through `base`: its id once created, and whether its payment was
/// acknowledged too.
async fn create_and_pay(http: &reqwest::Client, base: &str, key: &str) -> (Option<String>, bool) {
    let created = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"amount": 120, "currency": "usd"}))
        .send()
        .await;
    let Ok(created) = created else {
        return (None, false);
    };
    if created.status() != 200 {
        return (None, false);
    }
    let Ok(body) = created.json::<serde_json::Value>().await else {
        return (None, false);
    };
    let id = body["sessionId"].as_str().unwrap().to_string();
    let paid = http
        .post(format!("{base}/v1/test_helpers/sessions/{id}/pay"))
        .bearer_auth(key)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200);
    (Some(id), paid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_instances_killed_under_load_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let work = Workdir::new();
    let key = work
        .ok(&["keys", "create", "--mode", "test"])
        .trim()
        .to_string();
    let (mut one, two) = serve_two(&work, &NO_LIMITS);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Four clients on each instance; the survivor's must all succeed.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let base = if i % 2 == 0 {
                one.base.clone()
            } else {
                two.base.clone()
            };
            let (http, key, stop) = (http.clone(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (id, paid) = create_and_pay(&http, &base, &key).await;
                    if i % 2 == 1 {
                        assert!(id.is_some() && paid, "the survivor failed a request");
                    }
                    if let Some(id) = id {
                        done.push((id, paid));
                    }
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    one.child.kill().unwrap(); // SIGKILL, mid-request
    one.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    assert!(acknowledged.len() > 20, "{} requests", acknowledged.len());
    for (id, paid) in &acknowledged {
        let read: serde_json::Value = http
            .get(format!("{}/v1/sessions/{id}", two.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if *paid {
            assert_eq!(read["status"], "paid", "{read}");
        } else {
            assert!(read["sessionId"] == id.as_str(), "{read}");
        }
    }
    let verified = work.ok(&["ledger", "verify"]);
    assert!(verified.contains("consistent"), "{verified}");
}

/// A PostgreSQL server of a test's own, in a temporary directory, that the test can
/// stop and start again.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

impl PrivatePostgres {
    fn binary(name: &str) -> std::path::PathBuf {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|version| version.path().join("bin").join(name))
            .find(|path| path.exists())
            .unwrap_or_else(|| name.into())
    }

    /// The command as the `postgres` user when run as root (PostgreSQL refuses root).
    fn command(name: &str) -> Command {
        let binary = Self::binary(name);
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if is_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(binary);
            cmd
        } else {
            Command::new(binary)
        }
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Command::new("chmod")
            .arg("777")
            .arg(dir.path())
            .status()
            .unwrap();
        let data = dir.path().join("data");
        let made = Self::command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb of PostgreSQL");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut postgres = PrivatePostgres {
            dir,
            port,
            server: None,
        };
        postgres.start();
        postgres
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&mut self) {
        let child = Self::command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the private PostgreSQL did not start");
    }

    /// A fast shutdown: open connections are ended, as in a restart.
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGINT to the postmaster itself (runuser, its parent, does not pass it on).
            let pid_file = self.dir.path().join("data").join("postmaster.pid");
            let postmaster = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string))
                .unwrap_or_else(|| server.id().to_string());
            let _ = Command::new("kill").args(["-INT", &postmaster]).status();
            let _ = server.wait();
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_answers_503_then_the_service_recovers_by_itself() {
    let mut postgres = PrivatePostgres::new();
    let work = Workdir::new();
    let url = postgres.url();
    let created = work
        .command()
        .args(["keys", "create", "--mode", "test", "--database-url", &url])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let mut args = vec!["--database-url", url.as_str()];
    args.extend(NO_LIMITS);
    let served = serve(&work, &args);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let (id, paid) = create_and_pay(&http, &served.base, &key).await;
    assert!(id.is_some() && paid);

    postgres.stop();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let response = http
            .post(format!("{}/v1/sessions", served.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({"amount": 120, "currency": "usd"}))
            .send()
            .await
            .expect("an answer, not a hang");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error", "{body}");
    }
    let health = http
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);

    postgres.start();
    let mut recovered = false;
    for _ in 0..50 {
        if let (Some(_), true) = create_and_pay(&http, &served.base, &key).await {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the service did not recover");
    let status = status_with(&served.base, &key).await;
    assert_eq!(status, 200);
}

/// A webhook receiver on loopback that takes `hold` to answer 200 to each delivery,
/// and what arrived: (webhook-id, timestamp, signature, body).
async fn slow_receiver(
    hold: Duration,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, Vec<u8>)>>>,
) {
    use axum::http::HeaderMap;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let h = |n: &str| headers[n].to_str().unwrap().to_string();
                log.lock().unwrap().push((
                    h("webhook-id"),
                    h("webhook-timestamp"),
                    h("webhook-signature"),
                    body.to_vec(),
                ));
                tokio::time::sleep(hold).await;
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_delivery_loses_no_event_and_the_cli_redelivers() {
    let work = Workdir::new();
    let key = work
        .ok(&["keys", "create", "--mode", "test"])
        .trim()
        .to_string();
    let (url, received) = slow_receiver(Duration::from_secs(2)).await;
    let args = ["--webhook-timeout", "5", "--database-url"];
    let database_url = work.database_url();
    let mut first = serve(&work, &[&args[..], &[database_url.as_str()]].concat());
    let http = reqwest::Client::new();
    let endpoint: serde_json::Value = http
        .post(format!("{}/v1/webhook_endpoints", first.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "url": url }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    for _ in 0..10 {
        let (id, paid) = create_and_pay(&http, &first.base, &key).await;
        assert!(id.is_some() && paid);
    }
    // Killed while the receiver holds the first deliveries, before it answers them.
    for _ in 0..200 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let in_flight: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert!(!in_flight.is_empty());

    let second = serve(&work, &[&args[..], &[database_url.as_str()]].concat());
    let events: serde_json::Value = http
        .get(format!("{}/v1/events?limit=100", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut expected: Vec<String> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 20, "a creation and a payment each");
    let arrived = |received: &[(String, String, String, Vec<u8>)]| {
        let mut ids: Vec<String> = received.iter().map(|r| r.0.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    // The deliveries cut short are leased for the timeout and 10 s more, then taken over.
    let taken_over = |received: &[(String, String, String, Vec<u8>)]| {
        in_flight
            .iter()
            .all(|id| received.iter().filter(|r| &r.0 == id).count() >= 2)
    };
    for _ in 0..60 {
        let received = received.lock().unwrap().clone();
        if arrived(&received) == expected && taken_over(&received) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all = received.lock().unwrap().clone();
    assert_eq!(arrived(&all), expected, "every event arrives");
    for (id, timestamp, signature, body) in &all {
        walleot_client::verify_webhook(&secret, id, timestamp, signature, body).unwrap();
    }
    assert!(
        taken_over(&all),
        "the deliveries cut short ({in_flight:?}) come again"
    );

    // The operator sends one again, under the same id, even while an attempt of it is
    // still on its way (that attempt's outcome does not undo the request).
    let before = all.len();
    let out = work.ok(&["webhooks", "redeliver", &expected[0]]);
    assert_eq!(out.trim(), endpoint["endpointId"].as_str().unwrap());
    for _ in 0..100 {
        if received.lock().unwrap().len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = received.lock().unwrap()[before..].to_vec();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, expected[0]);
    let unknown = work.run(&["webhooks", "redeliver", "evt_000000000000000000000000"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no event"));
    drop(second);
}
