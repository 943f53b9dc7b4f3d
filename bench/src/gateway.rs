//! The gateway under test, in its own process: started by re-executing this executable
//! with the hidden `gateway` subcommand ([`serve`]), configured only through the
//! `flashfusion` environment variables, and observed from `/proc` (resident memory, CPU
//! time). Also the throwaway root key it trusts ([`RootKey`]), and raising the
//! open-files limit, which the child inherits.
//!
//! With `BENCH_GATEWAY_WRAPPER` set (a command line, split on whitespace), the gateway
//! runs under that command, e.g. `valgrind --tool=callgrind --callgrind-out-file=cg.%p`
//! to count its instructions; the wrapper must exec the gateway in its own process (as
//! valgrind does), since the process is stopped and observed by its id.

use std::{net::TcpListener, path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};
use biscuit_auth::KeyPair;
use clap::Parser as _;
use flashfusion_api::auth::{Role, TokenService};
use nix::{
    sys::{
        resource::{Resource, getrlimit, setrlimit},
        signal::{Signal, kill},
    },
    unistd::{Pid, SysconfVar, sysconf},
};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// How long the gateway may take to answer `/readyz` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The same under `BENCH_GATEWAY_WRAPPER`: an instrumenting wrapper runs it 50-100×
/// slower.
const WRAPPED_START_TIMEOUT: Duration = Duration::from_secs(600);
/// The environment variable naming a command to run the gateway under.
const WRAPPER: &str = "BENCH_GATEWAY_WRAPPER";
/// How long it may take to drain and exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `/readyz` is asked while the gateway starts: the start-up time on SQLite is
/// a figure, so this bounds its resolution.
const READY_POLL: Duration = Duration::from_millis(5);

/// A root key made for one run: the gateway trusts it, the run mints its tokens with it.
pub struct RootKey {
    private_hex: String,
    tokens: TokenService,
}

impl RootKey {
    /// A fresh key pair.
    pub fn new() -> Self {
        let root = KeyPair::new();
        Self {
            private_hex: root.private().to_bytes_hex(),
            tokens: TokenService::from_key_pair(root, Duration::from_secs(24 * 3600)),
        }
    }

    /// A token for `user` with `role`, valid for a day.
    pub fn mint(&self, user: Uuid, role: Role) -> anyhow::Result<String> {
        self.tokens
            .issue(user, role, None)
            .map(|(token, _)| token)
            .map_err(|err| anyhow::anyhow!("cannot mint a token: {}", err.message()))
    }
}

/// The hidden `gateway` subcommand: `flashfusion serve` with the configuration the
/// parent put in the environment.
pub async fn serve() -> anyhow::Result<()> {
    let cli = flashfusion_api::config::Cli::try_parse_from(["flashfusion", "serve"])?;
    flashfusion_api::cli::run(cli).await
}

/// A running gateway child process.
pub struct Gateway {
    child: Child,
    pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Gateway {
    /// Starts a gateway on `database_url` trusting `root`, and waits until it answers
    /// `/readyz`.
    pub async fn start(database_url: &str, root: &RootKey) -> anyhow::Result<Self> {
        let port = free_port()?;
        let bind = format!("127.0.0.1:{port}");
        let wrapper = std::env::var(WRAPPER).unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(std::env::current_exe()?);
                command
            }
            None => Command::new(std::env::current_exe()?),
        };
        let start_timeout = if wrapper.trim().is_empty() {
            START_TIMEOUT
        } else {
            WRAPPED_START_TIMEOUT
        };
        // Nothing of the caller's gateway configuration leaks in: only what is set here.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FLASHFUSION_") {
                command.env_remove(&name);
            }
        }
        command
            .arg("gateway")
            .env("DATABASE_URL", database_url)
            .env("FLASHFUSION_BIND", &bind)
            .env("FLASHFUSION_BISCUIT_PRIVATE_KEY", &root.private_hex)
            // A throwaway sealing key, so no development key file is written.
            .env(
                "FLASHFUSION_SECRETS_KEY",
                format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            )
            // The load generator is one client at one address: the per-token and
            // per-address rate limit would measure itself, not the gateway.
            .env("FLASHFUSION_RATE_LIMIT_BURST", "0")
            // Not tower_http's line per failed response: `/readyz` answers 503 until the
            // gateway is ready, and it is polled every few milliseconds.
            .env(
                "FLASHFUSION_LOG",
                "warn,sqlx=error,sea_orm=error,tower_http=off",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot start the gateway")?;
        let pid = child.id().context("the gateway exited at once")?;
        let base = format!("http://{bind}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let ready = async {
            loop {
                if let Some(status) = child.try_wait()? {
                    bail!("the gateway exited before it was ready: {status}");
                }
                let answer = http.get(format!("{base}/readyz")).send().await;
                if answer.is_ok_and(|r| r.status().is_success()) {
                    return Ok(());
                }
                // Another process: there is no event to await, only its port to poll.
                tokio::time::sleep(READY_POLL).await;
            }
        };
        tokio::time::timeout(start_timeout, ready)
            .await
            .context("the gateway did not become ready in time")??;
        Ok(Self { child, pid, base })
    }

    /// The gateway's resident memory now, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .context("no VmRSS in /proc/<pid>/status")
    }

    /// The CPU time (user + system) the gateway has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        self.cpu_times().map(|(user, system)| user + system)
    }

    /// The gateway's user and system CPU time so far, apart.
    pub fn cpu_times(&self) -> anyhow::Result<(Duration, Duration)> {
        cpu_times(format!("/proc/{}/stat", self.pid))
    }

    /// SIGTERM, then waits for the drain; kills it if that takes too long.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid)?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("the gateway did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it");
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The CPU time this process (the load generator) has used so far.
pub fn own_cpu_time() -> anyhow::Result<Duration> {
    cpu_times("/proc/self/stat").map(|(user, system)| user + system)
}

/// The CPU time every process of the machine has used so far (all of `/proc/stat`'s
/// `cpu` line but idle and iowait): with [`own_cpu_time`] and the gateway's, it tells
/// how much else (Postgres, other programs) ran during a measurement.
pub fn machine_cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// User and system time from a `/proc/<pid>/stat` file (fields 14 and 15, in clock ticks).
fn cpu_times(path: impl AsRef<Path>) -> anyhow::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(path)?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("bad stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()?)
    };
    // After the name, field 3 (state) is index 0: utime (14) is 11, stime (15) is 12.
    let seconds = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
    Ok((seconds(ticks(11)?), seconds(ticks(12)?)))
}

/// A port nobody listens on right now (the OS picks it; the gateway binds it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Makes sure this process (and so the gateway it starts) may open `needed` files:
/// every subscriber is a socket on both sides.
pub fn allow_open_files(needed: u64) -> anyhow::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        bail!(
            "{needed} open files are needed but the hard limit is {hard}: raise it \
             (ulimit -Hn, or LimitNOFILE) or run fewer subscribers"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard)?;
    Ok(())
}
