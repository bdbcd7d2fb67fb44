//! Child processes: the service (`walleot serve`, run from this very executable so that
//! no other build is needed) and the baseline server, optionally pinned with `taskset`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Server {
    child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `walleot-bench <args>` and waits for the line naming its address.
    pub fn start(args: &[&str], cpus: Option<&str>) -> anyhow::Result<Self> {
        let me = match args.first() {
            Some(&"walleot") => service_executable()?,
            _ => std::env::current_exe()?,
        };
        let mut command = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list]).arg(&me);
                c
            }
            None => Command::new(&me),
        };
        let mut child = command
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let Some(line) = lines.next() else {
                anyhow::bail!("the server {args:?} exited before listening");
            };
            let line = line?;
            if let Some(at) = line.find("http://") {
                break line[at..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, base })
    }

    /// Resident and peak resident memory in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The service's own process (under `taskset`, which execs it, the same one).
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Runs the `walleot` command line of this executable and returns what it printed.
/// The executable that runs `walleot …`: this one, or another build of the benchmark
/// named by `WALLEOT_BENCH_SERVICE` (to measure an earlier version of the service with
/// the same load).
fn service_executable() -> anyhow::Result<std::path::PathBuf> {
    Ok(match std::env::var_os("WALLEOT_BENCH_SERVICE") {
        Some(path) => path.into(),
        None => std::env::current_exe()?,
    })
}

pub fn walleot(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(service_executable()?)
        .arg("walleot")
        .args(args)
        .env("RUST_LOG", "error")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "walleot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
