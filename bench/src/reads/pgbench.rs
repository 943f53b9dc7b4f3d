//! Replaying SQL with `pgbench` (PostgreSQL's own load tool), when it is installed, at
//! the gateway's connection counts: the transactions per second Postgres gives a script
//! on this machine, to set the gateway's requests per second against.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// Where Debian's PostgreSQL 15 keeps it when it is not on the PATH.
const DEBIAN_PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";
/// A replay may take at most this long beyond its duration.
const GRACE: Duration = Duration::from_secs(60);

/// The `pgbench` executable, if there is one.
pub fn find() -> Option<String> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("pgbench"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| Some(Path::new(DEBIAN_PGBENCH).to_path_buf()).filter(|p| p.is_file()))
        .map(|p| p.to_string_lossy().into_owned())
}

/// How long each replay runs.
#[derive(Clone, Copy)]
pub enum Length {
    /// `-T`: whole seconds.
    Seconds(u64),
    /// `-t`: transactions per client.
    Transactions(u64),
}

/// Runs `script` (pgbench's script syntax) with `clients` clients against `url`,
/// simple-query protocol, no vacuum; its transactions per second.
pub async fn tps(
    pgbench: &str,
    url: &str,
    script: &Path,
    clients: usize,
    length: Length,
) -> anyhow::Result<f64> {
    let (flag, value, limit) = match length {
        Length::Seconds(s) => ("-T", s, Duration::from_secs(s) + GRACE),
        Length::Transactions(t) => ("-t", t, GRACE),
    };
    // As many threads as the load generator's cores would give it: pgbench's threads
    // compete with Postgres for the same 2 cores, as the gateway does.
    let threads = clients.min(std::thread::available_parallelism().map_or(1, usize::from));
    let run = Command::new(pgbench)
        .args(["-n", "-M", "simple", "-f"])
        .arg(script)
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args([flag, &value.to_string()])
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .context("pgbench did not finish in time")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_tps(&stdout).with_context(|| format!("no tps in pgbench's output: {stdout}"))
}

/// `tps = 1234.5 (without initial connection time)`.
fn parse_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        line.strip_prefix("tps = ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_read_from_the_summary() {
        let output = "number of failed transactions: 0 (0.000%)\n\
                      latency average = 0.151 ms\n\
                      initial connection time = 2.345 ms\n\
                      tps = 6612.029930 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(6612.029930));
        assert_eq!(parse_tps("nothing"), None);
    }
}
