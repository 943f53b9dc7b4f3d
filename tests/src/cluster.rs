//! [`Cluster`]: a private PostgreSQL cluster of the tests' own (`initdb` + `pg_ctl` in a
//! temporary directory, on a free loopback port), for tests that stop and start the
//! server (the shared one must not be disturbed) and as the harness's fallback when no
//! server answers at `TEST_DATABASE_URL` but PostgreSQL is installed. It is stopped and
//! its directory removed when dropped.
//!
//! `initdb` refuses to run as root, so when the tests run as root (as in CI) every
//! PostgreSQL program runs as the `postgres` OS user (`runuser -u postgres --`), and the
//! directory is handed to that user first.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A running private cluster: trust authentication, superuser `postgres`.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl Cluster {
    /// Whether PostgreSQL's server programs are installed (`initdb` and `pg_ctl` under
    /// `/usr/lib/postgresql/<version>/bin`, the newest version, or on the `PATH`).
    pub fn installed() -> bool {
        binaries().is_some()
    }

    /// Creates and starts a cluster; panics with the programs' output if it cannot.
    pub fn start() -> Self {
        let bin = binaries().expect("PostgreSQL's initdb and pg_ctl are not installed");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("a directory for the cluster");
        if as_root() {
            // The postgres user must own the data directory and the socket directory.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let data = dir.path().join("data");
        let mut initdb = postgres_command(&bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data);
        run(&mut initdb);
        let mut cluster = Self {
            bin,
            port: free_port(),
            dir,
            running: false,
        };
        cluster.start_again();
        cluster
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server now (`pg_ctl stop -m fast`: sessions are ended, as in a
    /// restart), waiting until it has stopped.
    pub fn stop(&mut self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        self.running = false;
    }

    /// Starts the stopped server again on the same port and data, waiting until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "30",
            "-o",
            &options,
            "-l",
            &log.display().to_string(),
        ]);
        self.running = true;
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut command = postgres_command(&self.bin.join("pg_ctl"));
        command.arg("-D").arg(self.data()).args(args);
        run(&mut command);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let mut command = postgres_command(&self.bin.join("pg_ctl"));
            command
                .arg("-D")
                .arg(self.data())
                .args(["stop", "-m", "immediate", "-w"]);
            let _ = command.output();
        }
    }
}

/// Stops and removes the clusters of test processes that are gone: a cluster kept in a
/// `static` (the harness's fallback) is never dropped, so the next run cleans it up.
pub fn remove_stale() {
    let Some(bin) = binaries() else { return };
    let entries = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let mut command = postgres_command(&bin.join("pg_ctl"));
        command
            .arg("-D")
            .arg(entry.path().join("data"))
            .args(["stop", "-m", "immediate", "-w"]);
        let _ = command.output();
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// How the directories of private clusters are named: `ff-cluster-<pid>-<random>`.
const PREFIX: &str = "ff-cluster-";

/// The directory holding `initdb` and `pg_ctl`.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    versions
        .into_iter()
        .rev()
        .map(|(_, bin)| bin)
        .chain(from_path)
        .find(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program`, run as the `postgres` OS user when the tests run as root.
fn postgres_command(program: &Path) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
