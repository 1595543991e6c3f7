//! The summary etcd's benchmark prints (its `pkg/report`): totals, a histogram of response
//! times, latency percentiles and the errors by message, in the same words and layout, so
//! scripts that read one read the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The percentiles reported, as etcd's report lists them.
const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// `--sample`: also record when each successful request started, and print etcd's table of
/// them per second after the summary. Set once by `main` before any request.
pub static SAMPLE: AtomicBool = AtomicBool::new(false);

/// Results of one worker; merged into a [`Report`] at the end.
#[derive(Default)]
pub struct Results {
    /// Seconds each successful request took.
    latencies: Vec<f64>,
    /// With [`SAMPLE`]: each successful request's start (Unix second) and duration.
    samples: Vec<(u64, Duration)>,
    /// Failed requests by error message.
    errors: BTreeMap<String, usize>,
}

impl Results {
    pub fn ok(&mut self, took: Duration) {
        self.latencies.push(took.as_secs_f64());
        if SAMPLE.load(Ordering::Relaxed) {
            let start = SystemTime::now()
                .checked_sub(took)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .unwrap_or_default();
            self.samples.push((start.as_secs(), took));
        }
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
        self.samples.extend(other.samples);
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
            if SAMPLE.load(Ordering::Relaxed) {
                let _ = writeln!(s, "{}", per_second(&self.results.samples));
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

/// etcd's `--sample` table: for every second from the first request's start to the last's,
/// the fastest, average and slowest request started in it and how many started (a second
/// with none is all zeros), as CSV.
fn per_second(samples: &[(u64, Duration)]) -> String {
    struct Second {
        min: Duration,
        total: Duration,
        max: Duration,
        count: u32,
    }
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    for &(at, took) in samples {
        let second = seconds.entry(at).or_insert(Second {
            min: took,
            total: Duration::ZERO,
            max: took,
            count: 0,
        });
        // As etcd: a zero latency never lowers the minimum.
        if !took.is_zero() {
            second.min = second.min.min(took);
        }
        second.max = second.max.max(took);
        second.total += took;
        second.count += 1;
    }
    let mut out = String::from(
        "\nSample in one second (unix latency throughput):\n\
         UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n",
    );
    let (Some(&first), Some(&last)) = (seconds.keys().next(), seconds.keys().next_back()) else {
        return out;
    };
    for at in first..=last {
        let (min, avg, max, count) = match seconds.get(&at) {
            Some(s) => (s.min, s.total / s.count, s.max, s.count),
            None => (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0),
        };
        let _ = writeln!(
            out,
            "{at},{},{},{},{count}",
            go_duration(min),
            go_duration(avg),
            go_duration(max)
        );
    }
    out
}

/// A duration as Go's `time.Duration.String` writes it: `0s`, `850ns`, `1.5µs`, `12.25ms`,
/// `1.5s`, `2m3s`, `1h0m0s`.
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    // The integer part, then up to `digits` decimals with trailing zeros dropped.
    let fixed = |n: u128, digits: u32| {
        let scale = 10u128.pow(digits);
        let frac = format!("{:0width$}", n % scale, width = digits as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}", n / scale)
        } else {
            format!("{}.{frac}", n / scale)
        }
    };
    match nanos {
        0 => "0s".to_owned(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", fixed(n, 3)),
        n if n < 1_000_000_000 => format!("{}ms", fixed(n, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let s = fixed(n % 60_000_000_000, 9);
            if h > 0 {
                format!("{h}h{m}m{s}s")
            } else if m > 0 {
                format!("{m}m{s}s")
            } else {
                format!("{s}s")
            }
        }
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
    fn durations_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(12_250), "12.25ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(123_500), "2m3.5s"),
            (Duration::from_secs(3_600), "1h0m0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }

    #[test]
    fn samples_per_second_fill_the_gaps() {
        let ms = Duration::from_millis;
        let table = per_second(&[(10, ms(2)), (10, ms(4)), (12, ms(1))]);
        assert_eq!(
            table,
            "\nSample in one second (unix latency throughput):\n\
             UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n\
             10,2ms,3ms,4ms,2\n11,0s,0s,0s,0\n12,1ms,1ms,1ms,1\n"
        );
    }

    #[test]
    fn precise_numbers_as_go_prints_them() {
        assert_eq!(go_g(0.0012345), "0.0012345");
        assert_eq!(go_g(1.5e-5), "1.5e-05");
        assert_eq!(go_g(25.0), "25");
        assert_eq!(go_g(99.9), "99.9");
    }
}
