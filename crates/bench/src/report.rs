//! The summary etcd's benchmark prints (its `pkg/report`): totals, a histogram of response
//! times, latency percentiles and the errors by message, in the same words and layout, so
//! scripts that read one read the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The percentiles reported, as etcd's report lists them.
const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Results of one worker; merged into a [`Report`] at the end.
#[derive(Default)]
pub struct Results {
    /// Seconds each successful request took.
    latencies: Vec<f64>,
    /// Failed requests by error message.
    errors: BTreeMap<String, usize>,
}

impl Results {
    pub fn ok(&mut self, took: Duration) {
        self.latencies.push(took.as_secs_f64());
    }

    pub fn failed(&mut self, error: impl ToString) {
        *self.errors.entry(error.to_string()).or_default() += 1;
    }

    /// Records the outcome of a request started at `start`.
    pub fn record<T, E: ToString>(&mut self, start: Instant, outcome: Result<T, E>) {
        match outcome {
            Ok(_) => self.ok(start.elapsed()),
            Err(e) => self.failed(e),
        }
    }

    /// Requests counted, successful or not.
    pub fn count(&self) -> usize {
        self.latencies.len() + self.errors.values().sum::<usize>()
    }

    pub fn merge(&mut self, other: Results) {
        self.latencies.extend(other.latencies);
        for (error, n) in other.errors {
            *self.errors.entry(error).or_default() += n;
        }
    }
}

/// Everything measured in one run, and how to print it.
pub struct Report {
    results: Results,
    total: Duration,
    /// `--precise`: full floating point precision instead of four decimals.
    precise: bool,
}

impl Report {
    /// `total` is the wall time of the run.
    pub fn new(mut results: Results, total: Duration, precise: bool) -> Report {
        results.latencies.sort_by(f64::total_cmp);
        Report {
            results,
            total,
            precise,
        }
    }

    fn num(&self, x: f64) -> String {
        if self.precise {
            go_g(x)
        } else {
            format!("{x:.4}")
        }
    }

    fn secs(&self, x: f64) -> String {
        format!("{} secs", self.num(x))
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lats = &self.results.latencies;
        let mut s = String::new();
        if !lats.is_empty() {
            let n = lats.len() as f64;
            let total = self.total.as_secs_f64();
            let average = lats.iter().sum::<f64>() / n;
            let stddev = (lats.iter().map(|l| (l - average).powi(2)).sum::<f64>() / n).sqrt();
            let (fastest, slowest) = (lats[0], lats[lats.len() - 1]);
            s += "\nSummary:\n";
            let _ = writeln!(s, "  Total:\t{}.", self.secs(total));
            let _ = writeln!(s, "  Slowest:\t{}.", self.secs(slowest));
            let _ = writeln!(s, "  Fastest:\t{}.", self.secs(fastest));
            let _ = writeln!(s, "  Average:\t{}.", self.secs(average));
            let _ = writeln!(s, "  Stddev:\t{}.", self.secs(stddev));
            let _ = writeln!(s, "  Requests/sec:\t{}", self.num(n / total));
            s += "\nResponse time histogram:\n";
            for (bucket, count, bar) in histogram(lats, fastest, slowest) {
                let _ = writeln!(s, "  {} [{count}]\t|{bar}", self.num(bucket));
            }
            s += "\nLatency distribution:\n";
            for (p, value) in PERCENTILES.iter().zip(percentiles(lats)) {
                if value > 0.0 {
                    let _ = writeln!(s, "  {}% in {}.", go_g(*p), self.secs(value));
                }
            }
        }
        if !self.results.errors.is_empty() {
            s += "\nError distribution:\n";
            for (error, n) in &self.results.errors {
                let _ = writeln!(s, "  [{n}]\t{error}");
            }
        }
        f.write_str(&s)
    }
}

/// Ten equal buckets between the fastest and the slowest, plus the slowest itself: each
/// bucket's upper bound, how many fell in it, and a bar scaled to the fullest.
fn histogram(sorted: &[f64], fastest: f64, slowest: f64) -> Vec<(f64, usize, String)> {
    const BUCKETS: usize = 10;
    let width = (slowest - fastest) / BUCKETS as f64;
    let mut bounds: Vec<f64> = (0..BUCKETS).map(|i| fastest + width * i as f64).collect();
    bounds.push(slowest);
    let mut counts = vec![0usize; bounds.len()];
    let mut b = 0;
    let mut i = 0;
    while i < sorted.len() {
        if sorted[i] <= bounds[b] {
            counts[b] += 1;
            i += 1;
        } else if b < bounds.len() - 1 {
            b += 1;
        } else {
            break;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    bounds
        .into_iter()
        .zip(counts)
        .map(|(bound, count)| {
            let len = (count * 40).checked_div(max).unwrap_or(0);
            (bound, count, "∎".repeat(len))
        })
        .collect()
}

/// The value at each of [`PERCENTILES`]: the first sample at or past that share.
fn percentiles(sorted: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; PERCENTILES.len()];
    let mut j = 0;
    let n = sorted.len() as f64;
    for (i, value) in sorted.iter().enumerate() {
        if j >= PERCENTILES.len() {
            break;
        }
        if i as f64 * 100.0 / n >= PERCENTILES[j] {
            out[j] = *value;
            j += 1;
        }
    }
    out
}

/// A float as Go's `%g` writes it: the shortest form, with an exponent only for very small
/// or very large values.
fn go_g(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{x:e}");
        // Go writes at least two exponent digits with a sign: 1.5e-05, 2e+21.
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_as_etcds() {
        let mut r = Results::default();
        for ms in 1..=100 {
            r.ok(Duration::from_millis(ms));
        }
        r.failed("etcdserver: request timed out");
        let text = Report::new(r, Duration::from_secs(2), false).to_string();
        assert!(
            text.contains("\nSummary:\n  Total:\t2.0000 secs.\n"),
            "{text}"
        );
        assert!(text.contains("  Slowest:\t0.1000 secs.\n"), "{text}");
        assert!(text.contains("  Fastest:\t0.0010 secs.\n"), "{text}");
        assert!(text.contains("  Requests/sec:\t50.0000\n"), "{text}");
        assert!(text.contains("  50% in 0.0510 secs.\n"), "{text}");
        // As in etcd: a percentile past the last sample is left out.
        assert!(!text.contains("99.9%"), "{text}");
        assert!(
            text.contains("\nError distribution:\n  [1]\tetcdserver: request timed out\n"),
            "{text}"
        );
        assert_eq!(text.matches('|').count(), 11, "{text}");
    }

    #[test]
    fn precise_numbers_as_go_prints_them() {
        assert_eq!(go_g(0.0012345), "0.0012345");
        assert_eq!(go_g(1.5e-5), "1.5e-05");
        assert_eq!(go_g(25.0), "25");
        assert_eq!(go_g(99.9), "99.9");
    }
}
