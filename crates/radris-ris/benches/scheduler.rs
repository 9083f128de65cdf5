//! The auto-scheduler against the first-fit baseline on generated weeks.
//!
//! `cargo bench -p radris-ris --bench scheduler` prints one table per week size. Under
//! `cargo test` (no `--bench` argument) it only runs a small smoke week.

use std::time::Instant;

use radris_ris::scheduler::{
    Metrics, Options, Problem, Schedule, Weights, check, evaluate, first_fit, generate_week,
    greedy, optimise,
};

/// Monday 2026-01-05 00:00 UTC in minutes since the epoch.
const WEEK_START: i64 = 29_433_600;

fn run(name: &str, problem: &Problem, weights: &Weights, f: impl Fn() -> Schedule) {
    let t = Instant::now();
    let schedule = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if let Err(e) = check(problem, &schedule) {
        panic!("{name}: infeasible schedule: {e}");
    }
    let m: Metrics = evaluate(problem, &schedule, weights);
    println!(
        "| {:<10} | {:>6} | {:>8} | {:>7.1} | {:>9.1} | {:>9.1} | {:>11.1} | {:>13.0} | {:>10.1} |",
        name,
        m.placed,
        m.unplaced,
        m.utilisation * 100.0,
        m.mean_wait_min,
        m.stat_mean_wait_min,
        m.urgent_mean_wait_min,
        m.objective,
        ms
    );
}

fn week(seed: u64, orders: usize, opts: &Options) {
    let problem = generate_week(seed, orders, WEEK_START);
    let weights = Weights::default();
    let stat = problem
        .requests
        .iter()
        .filter(|r| r.priority == radris_ris::Priority::Stat)
        .count();
    println!(
        "\nweek seed {seed}: {orders} orders ({stat} STAT), {} resources, {} existing bookings",
        problem.resources.len(),
        problem.busy.len()
    );
    println!(
        "| algorithm  | placed | unplaced | util. % | mean wait | STAT wait | urgent wait |     objective | runtime ms |"
    );
    println!(
        "|------------|-------:|---------:|--------:|----------:|----------:|------------:|--------------:|-----------:|"
    );
    run("first-fit", &problem, &weights, || first_fit(&problem));
    run("greedy", &problem, &weights, || greedy(&problem));
    run("optimise", &problem, &weights, || {
        optimise(&problem, &weights, opts)
    });
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        let opts = Options {
            max_iterations: 500,
            time_budget: None,
            seed: 1,
        };
        week(1, 100, &opts);
        return;
    }
    let opts = Options::default();
    println!(
        "optimise: max_iterations {}, time budget {:?}, seed {}",
        opts.max_iterations, opts.time_budget, opts.seed
    );
    for orders in [500, 1000] {
        week(42, orders, &opts);
    }
}
