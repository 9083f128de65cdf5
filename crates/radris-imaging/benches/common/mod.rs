//! Shared by the criterion benchmarks: a per-call median (ms) next to criterion's own
//! estimate, so that reports can quote one number per case.

#![allow(dead_code)] // each benchmark uses a subset

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

/// Per-case wall times of single calls, printed as a table by [`Medians::print`].
#[derive(Default)]
pub struct Medians {
    cases: RefCell<Vec<(String, Vec<f64>)>>,
}

impl Medians {
    /// Benchmarks `f` in `group` under `name`, recording each call's time.
    pub fn bench<T>(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        mut f: impl FnMut() -> T,
    ) {
        let mut ms = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    std::hint::black_box(f());
                    let e = t.elapsed();
                    ms.push(e.as_secs_f64() * 1e3);
                    total += e;
                }
                total
            })
        });
        self.cases.borrow_mut().push((name.to_string(), ms));
    }

    /// Adds times measured elsewhere (e.g. inside `iter_batched`).
    pub fn record(&self, name: &str, ms: Vec<f64>) {
        self.cases.borrow_mut().push((name.to_string(), ms));
    }

    /// Prints median / min / max ms and the number of timed calls per case.
    pub fn print(&self, title: &str) {
        println!("\n{title}");
        println!(
            "{:<44} {:>10} {:>9} {:>9} {:>6}",
            "case", "median ms", "min ms", "max ms", "calls"
        );
        for (name, ms) in self.cases.borrow_mut().iter_mut() {
            if ms.is_empty() {
                continue;
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "{name:<44} {:>10.2} {:>9.2} {:>9.2} {:>6}",
                ms[ms.len() / 2],
                ms[0],
                ms[ms.len() - 1],
                ms.len()
            );
        }
    }
}

/// A group with few samples and short phases: the cases take milliseconds to seconds.
pub fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    samples: usize,
    measure_s: u64,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(samples.max(10))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(measure_s));
    g
}
