//! What every run's report shares: the machine it measured, percentiles, the Markdown
//! table with one column per measurement, the build kind, and printing the report and
//! writing it to a file. Each run turns its own observations into figures.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

/// The machine a run measured, as BENCHMARKS.md describes it.
pub struct Machine {
    cpus: usize,
    cpu_model: String,
    memory: String,
    postgres: String,
}

impl Machine {
    /// Reads the machine from `/proc`; `postgres` is the server's `version()`.
    pub fn describe(postgres: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: field(&cpuinfo, "model name"),
            memory: field(&meminfo, "MemTotal"),
            postgres,
        }
    }

    /// The report's "Machine: ..." paragraph.
    pub fn paragraph(&self) -> String {
        format!(
            "Machine: {} CPUs ({}), {} memory; {}. Load generator, gateway and Postgres share it.\n\n",
            self.cpus, self.cpu_model, self.memory, self.postgres
        )
    }
}

/// p50, p99 and the maximum of a sample.
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles; sorts `sample`.
    pub fn of(sample: &mut [Duration]) -> Self {
        sample.sort_unstable();
        let at = |q: f64| {
            if sample.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank.
            let rank = ((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len());
            sample[rank - 1]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: sample.last().copied().unwrap_or_default(),
        }
    }
}

/// A duration in milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A duration in microseconds, one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Bytes in MiB, one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `count` over `over` in seconds; 0 for an empty span.
pub fn per_second(count: usize, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

/// How one row of a table shows one measurement.
pub type Cell<F> = Box<dyn Fn(&F) -> String>;

/// A Markdown table: one column per measurement (headed by `column`), one row per
/// entry of `rows`.
pub fn table<F>(column: impl Fn(&F) -> String, rows: &[(&str, Cell<F>)], runs: &[F]) -> String {
    let mut out = String::from("| |");
    for run in runs {
        out.push_str(&format!(" {} |", column(run)));
    }
    out.push_str("\n|---|");
    for _ in runs {
        out.push_str("---|");
    }
    out.push('\n');
    for (name, value) in rows {
        out.push_str(&format!("| {name} |"));
        for run in runs {
            out.push_str(&format!(" {} |", value(run)));
        }
        out.push('\n');
    }
    out
}

/// What the report says about the build that measured.
pub fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        " (debug build: figures are not representative)"
    } else {
        " (release build)"
    }
}

/// Prints the report and writes it to `out`, or to `target/bench/<run>-<UTC time>.md`.
pub fn publish(text: &str, out: Option<&Path>, run: &str) -> anyhow::Result<()> {
    println!("{text}");
    let out = out.map_or_else(|| default_out(run), Path::to_path_buf);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
    println!("figures written to {}", out.display());
    Ok(())
}

fn default_out(run: &str) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .unwrap_or(crate_dir)
        .join("target/bench")
        .join(format!("{run}-{stamp}.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut sample: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let p = Percentiles::of(&mut sample);
        assert_eq!((p.p50, p.p99, p.max), (ms(50), ms(99), ms(100)));
        let p = Percentiles::of(&mut [ms(7)]);
        assert_eq!((p.p50, p.p99, p.max), (ms(7), ms(7), ms(7)));
        let p = Percentiles::of(&mut []);
        assert_eq!(p.max, Duration::ZERO);
    }
}
