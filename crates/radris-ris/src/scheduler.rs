//! The RIS auto-scheduler: books a batch of orders onto modality resources.
//!
//! Pure and synchronous (no IO, no database, no clock except an optional time budget).
//! Times are **minutes as `i64`** on one absolute axis; the caller converts from epoch
//! milliseconds (`ms / 60_000`).
//!
//! # The problem
//!
//! * A [`Resource`] (a scanner, a room) of one modality can be booked inside its `open`
//!   windows (half-open `[start, end)` minutes; unsorted, overlapping or touching windows
//!   are sorted and merged first, so a booking may run across two touching windows).
//! * A [`Request`] needs `duration` minutes on any resource of its modality (compared
//!   ASCII-case-insensitively, surrounding blanks ignored), starting no earlier than
//!   `release`, ending no later than [`Problem::horizon_end`].
//! * [`Busy`] intervals are existing bookings that must not move; nothing may overlap them.
//!
//! Ids are expected to be unique. A later resource with an id already seen is ignored
//! (busy intervals naming the id apply to the first one); a later request with an id
//! already seen is left unplaced ("duplicate request id"). Busy intervals naming no
//! resource are ignored.
//!
//! # The objective (minimised)
//!
//! With `w(p)` the per-minute wait weight of priority `p` ([`Weights::stat_wait`] 50,
//! [`Weights::urgent_wait`] 5, [`Weights::routine_wait`] 1 by default) and
//! `wait = start − release`:
//!
//! ```text
//! objective = Σ_{placed r}   w(p_r) · (start_r − release_r)
//!           + Σ_{unplaced r} unplaced_penalty · w(p_r)          (unplaced_penalty = 100 000)
//! ```
//!
//! This is what "minimise STAT wait and patient wait while maximising utilisation" means
//! here:
//!
//! * **Utilisation** (booked minutes of placed requests ÷ open minutes, see [`Metrics`])
//!   only depends on *which* requests are placed inside the horizon, so it is raised by
//!   placing more of them. The unplaced penalty dominates every wait: leaving a request out
//!   costs `100 000 · w(p)`, while placing it costs at most `w(p) · (horizon_end − release)`,
//!   which is smaller for any horizon shorter than 100 000 minutes (~69 days). So no wait
//!   saving can ever justify leaving a request unplaced that could have been placed at
//!   the same cost to the others.
//! * Among unplaced requests the penalty is still weighted by priority: when capacity runs
//!   out, routine orders are left out before urgent, and urgent before STAT (one STAT
//!   outweighs 50 routine orders).
//! * **STAT wait** is weighted 50×, urgent 5×, routine 1×: an optimiser will delay a
//!   routine patient by up to 50 minutes to let a STAT patient in one minute earlier, but
//!   it still cares about every routine minute (the "patient wait" part).
//!
//! There is no idle-gap or spread term: with every placed request pushed as early as its
//! release allows, idle time before the last booking is exactly the time nobody could use,
//! and a spread term would only trade patient wait for cosmetic compactness.
//!
//! # The algorithms
//!
//! * [`first_fit`]: the baseline. Requests in release order (ties: input order); each goes
//!   to the earliest feasible start on the **first resource** (in listed order) of its
//!   modality that has any room for it before the horizon end.
//! * [`greedy`]: the optimiser's construction. Requests by priority (STAT, urgent,
//!   routine), then release, then input order; each goes to the resource of its modality
//!   that offers the earliest feasible start (best fit; ties: listed order).
//! * [`optimise`]: [`greedy`], then a large-neighbourhood local search (ruin and recreate
//!   under simulated annealing): pick a request (a quarter of the time one still
//!   unplaced; requests that cannot fit even into an empty calendar are never picked),
//!   unbook the requests of its modality that
//!   start within a random window (30 min … 8 h) around it (at most 12, nearest first, the
//!   picked one included even if it was unplaced), rebook them one by one at their earliest
//!   feasible start using a randomly chosen order (priority then release; priority then
//!   longest first; release; random), and accept the change if it does not worsen the
//!   objective, or with probability `exp(−Δ / T)` with `T` cooling geometrically from
//!   `8 · routine_wait` to `0.05 · routine_wait`. The best schedule seen is kept, then
//!   every request is pulled to its earliest feasible start given the others
//!   (compaction, never worse). Bounded by [`Options::max_iterations`] and
//!   [`Options::time_budget`]; deterministic for a given [`Options::seed`] unless the time
//!   budget cuts the run short. Every move only books free feasible slots, so the result
//!   is always feasible, and never worse than the greedy start.
//!
//! [`check`] verifies feasibility, [`evaluate`] computes [`Metrics`], and
//! [`generate_week`] builds a realistic test week.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::Priority;

/// Minutes in a day.
pub const MINUTES_PER_DAY: i64 = 1440;

/// A bookable modality resource (scanner, room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    /// Modality code, e.g. `CT`, `MR`, `US`, `XR`.
    pub modality: String,
    /// The half-open `[start, end)` windows (minutes) in which it can be booked.
    pub open: Vec<(i64, i64)>,
}

/// An order to book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub modality: String,
    /// Minutes; must be positive.
    pub duration: i64,
    pub priority: Priority,
    /// Earliest start (order time, now, or patient availability), minutes.
    pub release: i64,
}

/// An existing booking that must not move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub resource_id: String,
    pub start: i64,
    pub end: i64,
}

/// A scheduling problem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problem {
    pub resources: Vec<Resource>,
    pub requests: Vec<Request>,
    pub busy: Vec<Busy>,
    /// Every booking must end at or before this minute.
    pub horizon_end: i64,
}

/// One booked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub request_id: String,
    pub resource_id: String,
    pub start: i64,
    pub end: i64,
}

/// A solution: the placements (sorted by start, then resource order) and the requests
/// left out with the reason (in input order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    pub placements: Vec<Placement>,
    /// `(request id, reason)`.
    pub unplaced: Vec<(String, String)>,
}

/// Quality of a schedule (see [`evaluate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Requests of the problem that the schedule places.
    pub placed: usize,
    /// Requests of the problem that the schedule does not place.
    pub unplaced: usize,
    /// Booked minutes of placed requests ÷ open minutes of all resources within
    /// `[min release, horizon_end]` (busy time is not subtracted); 0..1, 0 when nothing
    /// is open.
    pub utilisation: f64,
    /// Mean `start − release` over placed requests (0 when none).
    pub mean_wait_min: f64,
    /// Mean wait over placed STAT requests (0 when none).
    pub stat_mean_wait_min: f64,
    /// Mean wait over placed urgent requests (0 when none).
    pub urgent_mean_wait_min: f64,
    /// Latest end of a placement, `None` when nothing is placed.
    pub makespan_end: Option<i64>,
    /// The objective documented in the module doc (lower is better).
    pub objective: f64,
}

/// Weights of the objective (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Per-minute wait weight of a STAT request (default 50).
    pub stat_wait: f64,
    /// Per-minute wait weight of an urgent request (default 5).
    pub urgent_wait: f64,
    /// Per-minute wait weight of a routine request (default 1).
    pub routine_wait: f64,
    /// Cost of an unplaced request, multiplied by its wait weight (default 100 000).
    pub unplaced_penalty: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            stat_wait: 50.0,
            urgent_wait: 5.0,
            routine_wait: 1.0,
            unplaced_penalty: 100_000.0,
        }
    }
}

impl Weights {
    /// The per-minute wait weight of a priority.
    pub fn wait_weight(&self, priority: Priority) -> f64 {
        match priority {
            Priority::Stat => self.stat_wait,
            Priority::Urgent => self.urgent_wait,
            Priority::Routine => self.routine_wait,
        }
    }

    /// The cost of leaving a request of this priority unplaced.
    pub fn unplaced_cost(&self, priority: Priority) -> f64 {
        self.unplaced_penalty * self.wait_weight(priority)
    }
}

/// Bounds and seed of the local search in [`optimise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Ruin-and-recreate iterations (default 100 000, about 0.4 s on a 1000-order week;
    /// 0 = greedy plus compaction only).
    pub max_iterations: u64,
    /// Wall-clock cap on the local search (default 1.5 s). When it cuts the run short the
    /// result depends on machine speed; `None` makes the run fully deterministic.
    pub time_budget: Option<Duration>,
    /// Seed of the search's pseudo-random choices (default 1).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_iterations: 100_000,
            time_budget: Some(Duration::from_millis(1500)),
            seed: 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pseudo-random numbers (SplitMix64), deterministic and dependency-free.

#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index into a non-empty slice of length `n`.
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

// ---------------------------------------------------------------------------------------
// The normalised model shared by all algorithms.

fn modality_key(m: &str) -> String {
    m.trim().to_ascii_uppercase()
}

/// Sorts, drops empty, and merges overlapping or touching intervals.
fn normalise_intervals(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.retain(|&(s, e)| s < e);
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Index of the first occurrence of each resource id.
fn resource_index(problem: &Problem) -> HashMap<&str, usize> {
    let mut map = HashMap::new();
    for (i, r) in problem.resources.iter().enumerate() {
        map.entry(r.id.as_str()).or_insert(i);
    }
    map
}

struct Model<'p> {
    problem: &'p Problem,
    /// Normalised open windows per resource (empty for ignored duplicates).
    windows: Vec<Vec<(i64, i64)>>,
    /// Merged busy intervals per resource.
    busy: Vec<Vec<(i64, i64)>>,
    /// Resources per modality group, in listed order.
    group_res: Vec<Vec<usize>>,
    /// Modality name per group, as first written.
    group_name: Vec<String>,
    /// Modality group of each request that can be considered at all.
    group_of: Vec<Option<usize>>,
    /// Why a request can never be placed (no resource, bad duration, duplicate id).
    reject: Vec<Option<String>>,
}

impl<'p> Model<'p> {
    fn build(problem: &'p Problem) -> Self {
        let index = resource_index(problem);
        let n_res = problem.resources.len();
        let mut windows = vec![Vec::new(); n_res];
        let mut groups: HashMap<String, usize> = HashMap::new();
        let mut group_res: Vec<Vec<usize>> = Vec::new();
        let mut group_name = Vec::new();
        for (i, r) in problem.resources.iter().enumerate() {
            if index.get(r.id.as_str()) != Some(&i) {
                continue; // duplicate id: ignored
            }
            windows[i] = normalise_intervals(r.open.clone());
            let key = modality_key(&r.modality);
            let g = *groups.entry(key).or_insert_with(|| {
                group_res.push(Vec::new());
                group_name.push(r.modality.trim().to_string());
                group_res.len() - 1
            });
            group_res[g].push(i);
        }
        let mut busy_raw = vec![Vec::new(); n_res];
        for b in &problem.busy {
            if let Some(&i) = index.get(b.resource_id.as_str()) {
                busy_raw[i].push((b.start, b.end));
            }
        }
        let busy = busy_raw.into_iter().map(normalise_intervals).collect();

        let mut seen = std::collections::HashSet::new();
        let mut group_of = Vec::with_capacity(problem.requests.len());
        let mut reject = Vec::with_capacity(problem.requests.len());
        for q in &problem.requests {
            let g = groups.get(&modality_key(&q.modality)).copied();
            let why = if !seen.insert(q.id.as_str()) {
                Some("duplicate request id".to_string())
            } else if q.duration <= 0 {
                Some(format!("invalid duration {} min", q.duration))
            } else if g.is_none() {
                Some(format!("no resource for modality {}", q.modality.trim()))
            } else {
                None
            };
            group_of.push(if why.is_none() { g } else { None });
            reject.push(why);
        }
        Model {
            problem,
            windows,
            busy,
            group_res,
            group_name,
            group_of,
            reject,
        }
    }

    fn req(&self, r: usize) -> &Request {
        &self.problem.requests[r]
    }
}

/// What occupies an interval of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Busy,
    Req(usize),
}

/// A (partial) schedule under construction: per resource the sorted, non-overlapping
/// occupied intervals, and per request its booking.
#[derive(Clone)]
struct State<'m, 'p> {
    m: &'m Model<'p>,
    occ: Vec<Vec<(i64, i64, Slot)>>,
    assign: Vec<Option<(usize, i64)>>,
}

impl<'m, 'p> State<'m, 'p> {
    fn new(m: &'m Model<'p>) -> Self {
        let occ = m
            .busy
            .iter()
            .map(|b| b.iter().map(|&(s, e)| (s, e, Slot::Busy)).collect())
            .collect();
        State {
            m,
            occ,
            assign: vec![None; m.problem.requests.len()],
        }
    }

    fn from_assign(m: &'m Model<'p>, assign: &[Option<(usize, i64)>]) -> Self {
        let mut st = State::new(m);
        for (r, a) in assign.iter().enumerate() {
            if let Some((res, start)) = *a {
                st.place(r, res, start);
            }
        }
        st
    }

    /// The earliest start `≥ from` at which `dur` minutes fit on `res`: inside one open
    /// window, before the horizon end, clear of every occupied interval.
    fn earliest_on(&self, res: usize, from: i64, dur: i64) -> Option<i64> {
        let wins = &self.m.windows[res];
        let iv = &self.occ[res];
        let horizon = self.m.problem.horizon_end;
        let mut t = from;
        let mut wi = wins.partition_point(|w| w.1 <= t);
        let mut k = iv.partition_point(|x| x.1 <= t);
        while wi < wins.len() {
            let (ws, we) = wins[wi];
            if ws >= horizon {
                return None;
            }
            let we = we.min(horizon);
            t = t.max(ws);
            if t.saturating_add(dur) > we {
                wi += 1;
                continue;
            }
            while k < iv.len() && iv[k].1 <= t {
                k += 1;
            }
            if k < iv.len() && iv[k].0 < t + dur {
                t = iv[k].1;
                k += 1;
                continue;
            }
            return Some(t);
        }
        None
    }

    /// The resource of the request's modality with the earliest feasible start.
    fn best_slot(&self, r: usize) -> Option<(usize, i64)> {
        let g = self.m.group_of[r]?;
        let q = self.m.req(r);
        let mut best: Option<(usize, i64)> = None;
        for &res in &self.m.group_res[g] {
            if let Some(t) = self.earliest_on(res, q.release, q.duration)
                && best.is_none_or(|(_, b)| t < b)
            {
                best = Some((res, t));
                if t == q.release {
                    break; // cannot do better
                }
            }
        }
        best
    }

    fn place(&mut self, r: usize, res: usize, start: i64) {
        debug_assert!(self.assign[r].is_none());
        let end = start + self.m.req(r).duration;
        let iv = &mut self.occ[res];
        let k = iv.partition_point(|x| x.0 < start);
        debug_assert!(k == 0 || iv[k - 1].1 <= start);
        debug_assert!(k == iv.len() || iv[k].0 >= end);
        iv.insert(k, (start, end, Slot::Req(r)));
        self.assign[r] = Some((res, start));
    }

    fn remove(&mut self, r: usize) {
        if let Some((res, start)) = self.assign[r].take() {
            let iv = &mut self.occ[res];
            let k = iv.partition_point(|x| x.0 < start);
            debug_assert_eq!(iv[k].2, Slot::Req(r));
            iv.remove(k);
        }
    }

    fn cost(&self, r: usize, w: &Weights) -> f64 {
        let q = self.m.req(r);
        match self.assign[r] {
            Some((_, start)) => w.wait_weight(q.priority) * (start - q.release) as f64,
            None => w.unplaced_cost(q.priority),
        }
    }

    fn total_cost(&self, w: &Weights) -> f64 {
        (0..self.assign.len()).map(|r| self.cost(r, w)).sum()
    }

    fn to_schedule(&self) -> Schedule {
        let p = self.m.problem;
        let mut placed: Vec<(i64, usize, usize)> = self
            .assign
            .iter()
            .enumerate()
            .filter_map(|(r, a)| a.map(|(res, s)| (s, res, r)))
            .collect();
        placed.sort_unstable();
        let placements = placed
            .into_iter()
            .map(|(start, res, r)| Placement {
                request_id: p.requests[r].id.clone(),
                resource_id: p.resources[res].id.clone(),
                start,
                end: start + p.requests[r].duration,
            })
            .collect();
        let unplaced = self
            .assign
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_none())
            .map(|(r, _)| {
                let why = match (&self.m.reject[r], self.m.group_of[r]) {
                    (Some(why), _) => why.clone(),
                    (None, Some(g)) => format!(
                        "no free {} slot between release and the horizon end",
                        self.m.group_name[g]
                    ),
                    (None, None) => "not schedulable".to_string(),
                };
                (p.requests[r].id.clone(), why)
            })
            .collect();
        Schedule {
            placements,
            unplaced,
        }
    }
}

fn greedy_fill(st: &mut State) {
    let m = st.m;
    let mut order: Vec<usize> = (0..m.problem.requests.len())
        .filter(|&r| m.group_of[r].is_some())
        .collect();
    order.sort_by_key(|&r| (m.req(r).priority, m.req(r).release, r));
    for r in order {
        if let Some((res, t)) = st.best_slot(r) {
            st.place(r, res, t);
        }
    }
}

/// Pulls every placed request to its earliest feasible start given the others, in start
/// order, until nothing moves (at most a few passes). Never increases any request's wait.
fn compact(st: &mut State) {
    for _ in 0..4 {
        let mut placed: Vec<(i64, usize)> = st
            .assign
            .iter()
            .enumerate()
            .filter_map(|(r, a)| a.map(|(_, s)| (s, r)))
            .collect();
        placed.sort_unstable();
        let mut moved = false;
        for (start, r) in placed {
            let (res, _) = st.assign[r].expect("placed");
            st.remove(r);
            match st.best_slot(r) {
                Some((nres, t)) if t < start => {
                    st.place(r, nres, t);
                    moved = true;
                }
                _ => st.place(r, res, start),
            }
        }
        if !moved {
            break;
        }
    }
}

/// The first-fit baseline (see the module doc).
pub fn first_fit(problem: &Problem) -> Schedule {
    let m = Model::build(problem);
    let mut st = State::new(&m);
    let mut order: Vec<usize> = (0..problem.requests.len())
        .filter(|&r| m.group_of[r].is_some())
        .collect();
    order.sort_by_key(|&r| (problem.requests[r].release, r));
    for r in order {
        let q = &problem.requests[r];
        let g = m.group_of[r].expect("filtered");
        for &res in &m.group_res[g] {
            if let Some(t) = st.earliest_on(res, q.release, q.duration) {
                st.place(r, res, t);
                break;
            }
        }
    }
    st.to_schedule()
}

/// The optimiser's construction alone: priority first, then release, each request on
/// the resource of its modality with the earliest feasible start.
pub fn greedy(problem: &Problem) -> Schedule {
    let m = Model::build(problem);
    let mut st = State::new(&m);
    greedy_fill(&mut st);
    st.to_schedule()
}

const MAX_RUIN: usize = 12;
const RUIN_HALF_WIDTHS: [i64; 6] = [30, 60, 120, 240, 480, 480];

/// Greedy construction plus ruin-and-recreate local search (see the module doc).
pub fn optimise(problem: &Problem, weights: &Weights, opts: &Options) -> Schedule {
    let m = Model::build(problem);
    let mut st = State::new(&m);
    greedy_fill(&mut st);
    let greedy_assign = st.assign.clone();
    let greedy_cost = st.total_cost(weights);

    local_search(&mut st, weights, opts);
    compact(&mut st);

    if st.total_cost(weights) > greedy_cost {
        // Cannot happen (the search keeps its best, compaction never worsens), but the
        // guarantee is cheap to enforce.
        st = State::from_assign(&m, &greedy_assign);
    }
    st.to_schedule()
}

fn local_search(st: &mut State, w: &Weights, opts: &Options) {
    let m = st.m;
    if opts.max_iterations == 0 {
        return;
    }
    // Requests that fit somewhere when nothing else is booked (the others can never be
    // placed: no window after their release, or none long enough).
    let empty = State::new(m);
    let candidates: Vec<usize> = (0..m.problem.requests.len())
        .filter(|&r| empty.best_slot(r).is_some())
        .collect();
    drop(empty);
    if candidates.is_empty() {
        return;
    }
    let mut rng = SplitMix64::new(opts.seed ^ 0x5EED_5C4E_D01E_u64);
    let began = Instant::now();
    let unit = w.routine_wait.max(1e-9);
    let (t0, t1) = (8.0 * unit, 0.05 * unit);
    let horizon = m.problem.horizon_end;

    let mut current = st.total_cost(w);
    let mut best = current;
    let mut best_assign = st.assign.clone();
    let mut progress = 0.0f64;

    let mut ruined: Vec<(i64, usize)> = Vec::with_capacity(64);
    let mut old: Vec<(usize, Option<(usize, i64)>)> = Vec::with_capacity(MAX_RUIN);
    let mut order: Vec<usize> = Vec::with_capacity(MAX_RUIN);
    let mut unplaced: Vec<usize> = Vec::new();

    for it in 0..opts.max_iterations {
        if it % 256 == 0 {
            unplaced.clear();
            unplaced.extend(
                candidates
                    .iter()
                    .copied()
                    .filter(|&r| st.assign[r].is_none()),
            );
        }
        if it % 64 == 0 {
            progress = it as f64 / opts.max_iterations as f64;
            if let Some(budget) = opts.time_budget {
                let e = began.elapsed();
                if e >= budget {
                    break;
                }
                progress = progress.max(e.as_secs_f64() / budget.as_secs_f64().max(1e-9));
            }
        }
        let temp = t0 * (t1 / t0).powf(progress);

        // Ruin: the requests of one modality starting near a chosen time.
        // A quarter of the time, try to fit in a request that is still unplaced.
        let mut r = candidates[rng.index(candidates.len())];
        if !unplaced.is_empty() && rng.chance(0.25) {
            let u = unplaced[rng.index(unplaced.len())];
            if st.assign[u].is_none() {
                r = u;
            }
        }
        let q = m.req(r);
        let g = m.group_of[r].expect("candidate");
        let centre = match st.assign[r] {
            Some((_, s)) => s,
            None => {
                let span = (horizon - q.duration - q.release).max(1);
                q.release + rng.below(span as u64) as i64
            }
        };
        let half = RUIN_HALF_WIDTHS[rng.index(RUIN_HALF_WIDTHS.len())];
        ruined.clear();
        for &res in &m.group_res[g] {
            let iv = &st.occ[res];
            let from = iv.partition_point(|x| x.0 < centre - half);
            for &(s, _, slot) in iv[from..].iter().take_while(|x| x.0 <= centre + half) {
                if let Slot::Req(o) = slot {
                    let d = (s - centre).abs();
                    ruined.push((if o == r { -1 } else { d }, o));
                }
            }
        }
        if st.assign[r].is_none() {
            ruined.push((-1, r));
        }
        if ruined.len() > MAX_RUIN {
            ruined.sort_unstable();
            ruined.truncate(MAX_RUIN);
        }
        old.clear();
        let mut old_cost = 0.0;
        for &(_, o) in &ruined {
            old.push((o, st.assign[o]));
            old_cost += st.cost(o, w);
        }
        for &(o, _) in &old {
            st.remove(o);
        }

        // Recreate in a randomly chosen order.
        order.clear();
        order.extend(old.iter().map(|&(o, _)| o));
        match rng.below(6) {
            0..=2 => order.sort_by_key(|&o| (m.req(o).priority, m.req(o).release, o)),
            3 => order.sort_by_key(|&o| (m.req(o).priority, -m.req(o).duration, o)),
            4 => order.sort_by_key(|&o| (m.req(o).release, m.req(o).priority, o)),
            _ => {
                for i in (1..order.len()).rev() {
                    let j = rng.index(i + 1);
                    order.swap(i, j);
                }
            }
        }
        let mut new_cost = 0.0;
        for &o in &order {
            if let Some((res, t)) = st.best_slot(o) {
                st.place(o, res, t);
            }
            new_cost += st.cost(o, w);
        }

        let delta = new_cost - old_cost;
        let accept = delta <= 0.0 || rng.chance((-delta / temp).exp());
        if accept {
            current += delta;
            if current < best - 1e-6 {
                best = current;
                best_assign.clone_from(&st.assign);
            }
        } else {
            for &o in &order {
                st.remove(o);
            }
            for &(o, a) in &old {
                if let Some((res, s)) = a {
                    st.place(o, res, s);
                }
            }
        }
        if rng.chance(0.0005) {
            // Guard against drift of the running float sum.
            current = st.total_cost(w);
        }
    }

    if st.assign != best_assign {
        *st = State::from_assign(m, &best_assign);
    }
}

// ---------------------------------------------------------------------------------------
// Checking and evaluating.

/// Feasibility of a schedule: every placement names a known request and resource of the
/// same modality, lasts exactly the request's duration, starts at or after its release,
/// ends at or before the horizon end, lies inside one (merged) open window, and overlaps
/// neither another placement nor a busy interval on its resource; no request is placed
/// twice or both placed and listed unplaced. The first violation found is returned.
pub fn check(problem: &Problem, schedule: &Schedule) -> Result<(), String> {
    let res_index = resource_index(problem);
    let mut req_index: HashMap<&str, usize> = HashMap::new();
    let mut duplicated = std::collections::HashSet::new();
    for (i, q) in problem.requests.iter().enumerate() {
        if req_index.contains_key(q.id.as_str()) {
            duplicated.insert(q.id.as_str());
        } else {
            req_index.insert(q.id.as_str(), i);
        }
    }
    let windows: Vec<Vec<(i64, i64)>> = problem
        .resources
        .iter()
        .map(|r| normalise_intervals(r.open.clone()))
        .collect();

    let mut placed = vec![false; problem.requests.len()];
    let mut per_res: Vec<Vec<(i64, i64, &str)>> = vec![Vec::new(); problem.resources.len()];
    for p in &schedule.placements {
        let &qi = req_index
            .get(p.request_id.as_str())
            .ok_or_else(|| format!("placement of unknown request {}", p.request_id))?;
        let q = &problem.requests[qi];
        if std::mem::replace(&mut placed[qi], true) {
            return Err(format!("request {} is placed more than once", q.id));
        }
        let &ri = res_index
            .get(p.resource_id.as_str())
            .ok_or_else(|| format!("request {} on unknown resource {}", q.id, p.resource_id))?;
        let res = &problem.resources[ri];
        if modality_key(&res.modality) != modality_key(&q.modality) {
            return Err(format!(
                "request {} ({}) on resource {} ({})",
                q.id, q.modality, res.id, res.modality
            ));
        }
        if q.duration <= 0 || p.end - p.start != q.duration {
            return Err(format!(
                "request {} booked {}..{} but lasts {} min",
                q.id, p.start, p.end, q.duration
            ));
        }
        if p.start < q.release {
            return Err(format!(
                "request {} starts at {} before its release {}",
                q.id, p.start, q.release
            ));
        }
        if p.end > problem.horizon_end {
            return Err(format!(
                "request {} ends at {} after the horizon end {}",
                q.id, p.end, problem.horizon_end
            ));
        }
        if !windows[ri].iter().any(|&(s, e)| s <= p.start && p.end <= e) {
            return Err(format!(
                "request {} at {}..{} is outside the open windows of {}",
                q.id, p.start, p.end, res.id
            ));
        }
        per_res[ri].push((p.start, p.end, q.id.as_str()));
    }
    for (id, _) in &schedule.unplaced {
        if let Some(&qi) = req_index.get(id.as_str())
            && placed[qi]
            && !duplicated.contains(id.as_str())
        {
            return Err(format!("request {id} is both placed and unplaced"));
        }
    }
    for b in &problem.busy {
        if let Some(&ri) = res_index.get(b.resource_id.as_str())
            && b.start < b.end
        {
            for &(s, e, id) in &per_res[ri] {
                if s < b.end && b.start < e {
                    return Err(format!(
                        "request {id} at {s}..{e} overlaps a busy booking {}..{} on {}",
                        b.start, b.end, b.resource_id
                    ));
                }
            }
        }
    }
    for (ri, v) in per_res.iter_mut().enumerate() {
        v.sort_unstable();
        for pair in v.windows(2) {
            if pair[1].0 < pair[0].1 {
                return Err(format!(
                    "requests {} and {} overlap on {}",
                    pair[0].2, pair[1].2, problem.resources[ri].id
                ));
            }
        }
    }
    Ok(())
}

/// Metrics of a schedule (see [`Metrics`]); a request counts as placed when a placement
/// names it, whatever `unplaced` says. Assumes `schedule` names each request at most once
/// ([`check`]).
pub fn evaluate(problem: &Problem, schedule: &Schedule, weights: &Weights) -> Metrics {
    let mut req_index: HashMap<&str, usize> = HashMap::new();
    for (i, q) in problem.requests.iter().enumerate() {
        req_index.entry(q.id.as_str()).or_insert(i);
    }
    let mut placed_flag = vec![false; problem.requests.len()];
    let mut objective = 0.0;
    let mut booked = 0i64;
    let (mut waits, mut n) = (0i64, 0usize);
    let (mut stat_waits, mut n_stat) = (0i64, 0usize);
    let (mut urgent_waits, mut n_urgent) = (0i64, 0usize);
    let mut makespan_end: Option<i64> = None;
    for p in &schedule.placements {
        let Some(&qi) = req_index.get(p.request_id.as_str()) else {
            continue;
        };
        if std::mem::replace(&mut placed_flag[qi], true) {
            continue;
        }
        let q = &problem.requests[qi];
        let wait = p.start - q.release;
        objective += weights.wait_weight(q.priority) * wait as f64;
        booked += p.end - p.start;
        waits += wait;
        n += 1;
        match q.priority {
            Priority::Stat => {
                stat_waits += wait;
                n_stat += 1;
            }
            Priority::Urgent => {
                urgent_waits += wait;
                n_urgent += 1;
            }
            Priority::Routine => {}
        }
        makespan_end = Some(makespan_end.map_or(p.end, |e| e.max(p.end)));
    }
    let mut unplaced = 0;
    for (qi, q) in problem.requests.iter().enumerate() {
        if !placed_flag[qi] {
            unplaced += 1;
            objective += weights.unplaced_cost(q.priority);
        }
    }

    let from = problem.requests.iter().map(|q| q.release).min();
    let mut open = 0i64;
    if let Some(from) = from {
        let index = resource_index(problem);
        for (i, r) in problem.resources.iter().enumerate() {
            if index.get(r.id.as_str()) != Some(&i) {
                continue;
            }
            for (s, e) in normalise_intervals(r.open.clone()) {
                let (s, e) = (s.max(from), e.min(problem.horizon_end));
                open += (e - s).max(0);
            }
        }
    }
    let mean = |sum: i64, n: usize| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
    Metrics {
        placed: problem.requests.len() - unplaced,
        unplaced,
        utilisation: if open > 0 {
            (booked as f64 / open as f64).min(1.0)
        } else {
            0.0
        },
        mean_wait_min: mean(waits, n),
        stat_mean_wait_min: mean(stat_waits, n_stat),
        urgent_mean_wait_min: mean(urgent_waits, n_urgent),
        makespan_end,
        objective,
    }
}

// ---------------------------------------------------------------------------------------
// A generated week.

/// A realistic generated week starting at `start` (minutes; taken to be a Monday 00:00).
///
/// * Resources: `CT-1`, `CT-2`, `MR-1`, `MR-2`, `US-1`, `XR-1`, `XR-2`, open Monday to
///   Friday 07:00–19:00; on Saturday 08:00–14:00 `CT-1`, `MR-1`, `US-1`, `XR-1` are
///   open, on Sunday 08:00–14:00 `CT-1` and `XR-1`.
/// * Existing bookings: 0–3 blocks of 15–60 min per resource and open day.
/// * Orders: 30% CT (15–30 min), 15% MR (30, 45 or 60 min), 12% US (20–30 min), 43% XR
///   (10 min); 10% STAT, 25% urgent, 65% routine. Releases fall on weekdays far more
///   than on weekends; 65% in a morning peak (07:00–13:00, densest around 10:00), 25%
///   spread over 07:00–19:00, 10% at any hour (emergency department); multiples of 5 min.
/// * The horizon is the end of the week (`start + 7 days`).
///
/// With 500 orders CT and MR run at about half their capacity, with 1000 close to full
/// (MR over it once weekend releases are counted), so queues form.
pub fn generate_week(seed: u64, orders: usize, start: i64) -> Problem {
    let mut rng = SplitMix64::new(seed);
    let day = MINUTES_PER_DAY;
    let hour = 60;
    // (id, modality, open on Saturday, open on Sunday)
    let layout: [(&str, &str, bool, bool); 7] = [
        ("CT-1", "CT", true, true),
        ("CT-2", "CT", false, false),
        ("MR-1", "MR", true, false),
        ("MR-2", "MR", false, false),
        ("US-1", "US", true, false),
        ("XR-1", "XR", true, true),
        ("XR-2", "XR", false, false),
    ];
    let mut resources = Vec::new();
    let mut busy = Vec::new();
    for (id, modality, sat, sun) in layout {
        let mut open = Vec::new();
        for d in 0..7 {
            let base = start + d * day;
            let window = match d {
                0..=4 => Some((base + 7 * hour, base + 19 * hour)),
                5 if sat => Some((base + 8 * hour, base + 14 * hour)),
                6 if sun => Some((base + 8 * hour, base + 14 * hour)),
                _ => None,
            };
            if let Some((ws, we)) = window {
                open.push((ws, we));
                let mut blocks: Vec<(i64, i64)> = (0..rng.below(4))
                    .map(|_| {
                        let len = 15 * (1 + rng.below(4) as i64);
                        let slots = ((we - ws - len) / 15) as u64;
                        let s = ws + 15 * rng.below(slots + 1) as i64;
                        (s, s + len)
                    })
                    .collect();
                blocks.sort_unstable();
                let mut last_end = i64::MIN;
                for (s, e) in blocks {
                    if s >= last_end {
                        busy.push(Busy {
                            resource_id: id.to_string(),
                            start: s,
                            end: e,
                        });
                        last_end = e;
                    }
                }
            }
        }
        resources.push(Resource {
            id: id.to_string(),
            modality: modality.to_string(),
            open,
        });
    }

    const DAY_WEIGHTS: [f64; 7] = [1.0, 1.0, 1.0, 1.0, 0.9, 0.25, 0.12];
    let day_total: f64 = DAY_WEIGHTS.iter().sum();
    let mut requests = Vec::with_capacity(orders);
    for i in 0..orders {
        let (modality, duration) = match rng.below(100) {
            0..=29 => ("CT", 15 + 5 * rng.below(4) as i64),
            30..=44 => ("MR", 30 + 15 * rng.below(3) as i64),
            45..=56 => ("US", 20 + 5 * rng.below(3) as i64),
            _ => ("XR", 10),
        };
        let priority = match rng.below(100) {
            0..=9 => Priority::Stat,
            10..=34 => Priority::Urgent,
            _ => Priority::Routine,
        };
        let mut pick = rng.unit() * day_total;
        let mut d = 0;
        while d < 6 && pick >= DAY_WEIGHTS[d] {
            pick -= DAY_WEIGHTS[d];
            d += 1;
        }
        let minute_of_day = match rng.below(100) {
            // morning peak: 07:00 + triangular over 0..6 h, mode at 3 h
            0..=64 => 7 * hour + rng.below(181) as i64 + rng.below(181) as i64,
            65..=89 => 7 * hour + rng.below(12 * 60) as i64,
            _ => rng.below(day as u64) as i64,
        };
        let release = start + d as i64 * day + minute_of_day / 5 * 5;
        requests.push(Request {
            id: format!("ORD-{:05}", i + 1),
            modality: modality.to_string(),
            duration,
            priority,
            release,
        });
    }
    Problem {
        resources,
        requests,
        busy,
        horizon_end: start + 7 * day,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str, modality: &str, open: &[(i64, i64)]) -> Resource {
        Resource {
            id: id.into(),
            modality: modality.into(),
            open: open.to_vec(),
        }
    }

    fn req(id: &str, modality: &str, duration: i64, priority: Priority, release: i64) -> Request {
        Request {
            id: id.into(),
            modality: modality.into(),
            duration,
            priority,
            release,
        }
    }

    fn busy(resource_id: &str, start: i64, end: i64) -> Busy {
        Busy {
            resource_id: resource_id.into(),
            start,
            end,
        }
    }

    fn quick() -> Options {
        Options {
            max_iterations: 3_000,
            time_budget: None,
            seed: 7,
        }
    }

    fn find<'a>(s: &'a Schedule, id: &str) -> &'a Placement {
        s.placements
            .iter()
            .find(|p| p.request_id == id)
            .unwrap_or_else(|| panic!("{id} not placed: {s:?}"))
    }

    fn all_algorithms(p: &Problem) -> Vec<(&'static str, Schedule)> {
        vec![
            ("first_fit", first_fit(p)),
            ("greedy", greedy(p)),
            ("optimise", optimise(p, &Weights::default(), &quick())),
        ]
    }

    #[test]
    fn empty_problem() {
        let p = Problem::default();
        for (name, s) in all_algorithms(&p) {
            assert_eq!(s, Schedule::default(), "{name}");
            check(&p, &s).unwrap();
            let m = evaluate(&p, &s, &Weights::default());
            assert_eq!((m.placed, m.unplaced), (0, 0));
            assert_eq!(m.objective, 0.0);
            assert_eq!(m.utilisation, 0.0);
            assert_eq!(m.makespan_end, None);
        }
        // Resources but no requests, requests but no resources.
        let p = Problem {
            resources: vec![res("CT-1", "CT", &[(0, 600)])],
            horizon_end: 600,
            ..Problem::default()
        };
        assert!(
            optimise(&p, &Weights::default(), &quick())
                .placements
                .is_empty()
        );
    }

    #[test]
    fn request_without_resource_of_its_modality_is_unplaced_with_reason() {
        let p = Problem {
            resources: vec![res("CT-1", "CT", &[(0, 600)])],
            requests: vec![
                req("a", "MR", 30, Priority::Stat, 0),
                req("b", "ct", 30, Priority::Routine, 0),
            ],
            busy: vec![],
            horizon_end: 600,
        };
        for (name, s) in all_algorithms(&p) {
            check(&p, &s).unwrap();
            assert_eq!(s.unplaced.len(), 1, "{name}");
            assert_eq!(s.unplaced[0].0, "a");
            assert!(
                s.unplaced[0].1.contains("no resource for modality MR"),
                "{s:?}"
            );
            // Modality codes compare case-insensitively.
            assert_eq!(find(&s, "b").resource_id, "CT-1");
            let m = evaluate(&p, &s, &Weights::default());
            assert_eq!((m.placed, m.unplaced), (1, 1));
            assert_eq!(m.objective, 100_000.0 * 50.0);
        }
    }

    #[test]
    fn request_with_no_room_before_horizon_is_unplaced_with_reason() {
        let p = Problem {
            resources: vec![res("US-1", "US", &[(0, 60)])],
            requests: vec![
                req("a", "US", 40, Priority::Routine, 0),
                req("b", "US", 40, Priority::Routine, 0),
                req("c", "US", 0, Priority::Routine, 0),
                req("a", "US", 10, Priority::Routine, 0),
            ],
            busy: vec![],
            horizon_end: 60,
        };
        for (name, s) in all_algorithms(&p) {
            check(&p, &s).unwrap();
            assert_eq!(s.placements.len(), 1, "{name}");
            let reasons: Vec<&str> = s.unplaced.iter().map(|(_, w)| w.as_str()).collect();
            assert_eq!(reasons.len(), 3, "{name}: {reasons:?}");
            assert!(reasons[0].contains("no free US slot"), "{reasons:?}");
            assert!(reasons[1].contains("invalid duration"), "{reasons:?}");
            assert!(reasons[2].contains("duplicate request id"), "{reasons:?}");
        }
    }

    #[test]
    fn respects_windows_release_busy_and_modality() {
        // CT-1 open 0..120 and 200..400 with a busy block 200..260; CT-2 opens at 300.
        let p = Problem {
            resources: vec![
                res("CT-1", "CT", &[(200, 400), (0, 120)]),
                res("CT-2", "CT", &[(300, 480)]),
                res("MR-1", "MR", &[(0, 480)]),
            ],
            requests: vec![
                req("late", "CT", 30, Priority::Routine, 100), // 100+30 > 120: next window
                req("mr", "MR", 45, Priority::Routine, 10),
                req("early", "CT", 60, Priority::Routine, 30),
            ],
            busy: vec![busy("CT-1", 200, 260), busy("MR-1", 0, 20)],
            horizon_end: 480,
        };
        for (name, s) in all_algorithms(&p) {
            check(&p, &s).unwrap_or_else(|e| panic!("{name}: {e}"));
            let late = find(&s, "late");
            assert_eq!(
                (late.resource_id.as_str(), late.start),
                ("CT-1", 260),
                "{name}"
            );
            let early = find(&s, "early");
            assert_eq!(
                (early.resource_id.as_str(), early.start),
                ("CT-1", 30),
                "{name}"
            );
            let mr = find(&s, "mr");
            assert_eq!(
                (mr.resource_id.as_str(), mr.start, mr.end),
                ("MR-1", 20, 65)
            );
        }
    }

    #[test]
    fn best_fit_uses_second_resource_but_first_fit_does_not() {
        let p = Problem {
            resources: vec![
                res("XR-1", "XR", &[(0, 600)]),
                res("XR-2", "XR", &[(0, 600)]),
            ],
            requests: vec![
                req("a", "XR", 10, Priority::Routine, 0),
                req("b", "XR", 10, Priority::Routine, 0),
            ],
            busy: vec![],
            horizon_end: 600,
        };
        let ff = first_fit(&p);
        assert_eq!(find(&ff, "b").resource_id, "XR-1");
        assert_eq!(find(&ff, "b").start, 10);
        let g = greedy(&p);
        assert_eq!(find(&g, "b").resource_id, "XR-2");
        assert_eq!(find(&g, "b").start, 0);
    }

    #[test]
    fn stat_goes_before_routine_when_they_compete() {
        let p = Problem {
            resources: vec![res("MR-1", "MR", &[(0, 600)])],
            requests: vec![
                req("routine", "MR", 60, Priority::Routine, 0),
                req("urgent", "MR", 60, Priority::Urgent, 5),
                req("stat", "MR", 60, Priority::Stat, 10),
            ],
            busy: vec![],
            horizon_end: 600,
        };
        let ff = first_fit(&p);
        assert_eq!(
            find(&ff, "stat").start,
            120,
            "baseline: STAT waits behind routine"
        );
        let s = optimise(&p, &Weights::default(), &quick());
        check(&p, &s).unwrap();
        // Routine at 0..60 first would cost STAT 50 min × 50; leaving the machine idle
        // for 10 minutes until STAT is released costs only the routine patient's wait.
        assert_eq!(find(&s, "stat").start, 10);
        assert_eq!(find(&s, "urgent").start, 70);
        assert_eq!(find(&s, "routine").start, 130);
        let (fm, om) = (
            evaluate(&p, &ff, &Weights::default()),
            evaluate(&p, &s, &Weights::default()),
        );
        assert!(om.objective < fm.objective);
        assert_eq!(om.stat_mean_wait_min, 0.0);
    }

    #[test]
    fn stat_wins_the_last_slot_when_capacity_runs_out() {
        let p = Problem {
            resources: vec![res("CT-1", "CT", &[(0, 30)])],
            requests: vec![
                req("r1", "CT", 15, Priority::Routine, 0),
                req("r2", "CT", 15, Priority::Routine, 0),
                req("s", "CT", 30, Priority::Stat, 0),
            ],
            busy: vec![],
            horizon_end: 30,
        };
        let s = optimise(&p, &Weights::default(), &quick());
        check(&p, &s).unwrap();
        assert_eq!(find(&s, "s").start, 0);
        assert_eq!(s.unplaced.len(), 2);
    }

    #[test]
    fn local_search_finds_what_greedy_misses() {
        // Greedy books the two urgent requests at their release; that leaves 25-minute
        // holes a 30-minute routine cannot use. Delaying one urgent by 5 minutes (cost
        // 25) opens room for the routine (saves far more than 25 minutes of its wait).
        let p = Problem {
            resources: vec![res("CT-1", "CT", &[(0, 600)])],
            requests: vec![
                req("u1", "CT", 20, Priority::Urgent, 25),
                req("u2", "CT", 20, Priority::Urgent, 70),
                req("r", "CT", 30, Priority::Routine, 0),
            ],
            busy: vec![busy("CT-1", 115, 400)],
            horizon_end: 600,
        };
        let w = Weights::default();
        let g = greedy(&p);
        assert_eq!(find(&g, "r").start, 400);
        let s = optimise(&p, &w, &quick());
        check(&p, &s).unwrap();
        assert!(evaluate(&p, &s, &w).objective < evaluate(&p, &g, &w).objective);
        assert!(find(&s, "r").start < 115, "{s:?}");
    }

    #[test]
    fn check_rejects_infeasible_schedules() {
        let p = Problem {
            resources: vec![
                res("CT-1", "CT", &[(0, 120)]),
                res("MR-1", "MR", &[(0, 120)]),
            ],
            requests: vec![
                req("a", "CT", 30, Priority::Routine, 10),
                req("b", "CT", 30, Priority::Routine, 0),
            ],
            busy: vec![busy("CT-1", 90, 120)],
            horizon_end: 120,
        };
        let pl = |id: &str, r: &str, s: i64, e: i64| Placement {
            request_id: id.into(),
            resource_id: r.into(),
            start: s,
            end: e,
        };
        let ok = Schedule {
            placements: vec![pl("a", "CT-1", 10, 40), pl("b", "CT-1", 40, 70)],
            unplaced: vec![],
        };
        check(&p, &ok).unwrap();
        let bad = [
            (
                vec![pl("a", "CT-1", 10, 40), pl("b", "CT-1", 30, 60)],
                "overlap",
            ),
            (vec![pl("a", "CT-1", 80, 110)], "busy"),
            (vec![pl("a", "CT-1", 5, 35)], "before its release"),
            (vec![pl("a", "MR-1", 10, 40)], "on resource MR-1"),
            (
                vec![pl("a", "CT-1", 10, 40), pl("a", "CT-1", 50, 80)],
                "more than once",
            ),
            (vec![pl("a", "CT-1", 10, 50)], "lasts"),
            (vec![pl("a", "XX-1", 10, 40)], "unknown resource"),
            (vec![pl("zz", "CT-1", 10, 40)], "unknown request"),
        ];
        for (placements, what) in bad {
            let e = check(
                &p,
                &Schedule {
                    placements,
                    unplaced: vec![],
                },
            )
            .unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        let outside = Problem {
            horizon_end: 200,
            busy: vec![],
            ..p.clone()
        };
        let e = check(
            &outside,
            &Schedule {
                placements: vec![pl("a", "CT-1", 100, 130)],
                unplaced: vec![],
            },
        )
        .unwrap_err();
        assert!(e.contains("outside the open windows"), "{e}");
        let e = check(
            &p,
            &Schedule {
                placements: vec![pl("a", "CT-1", 10, 40)],
                unplaced: vec![("a".into(), "x".into())],
            },
        )
        .unwrap_err();
        assert!(e.contains("both placed and unplaced"), "{e}");
    }

    #[test]
    fn evaluate_computes_the_documented_metrics() {
        let p = Problem {
            resources: vec![
                res("CT-1", "CT", &[(0, 100)]),
                res("CT-2", "CT", &[(0, 100)]),
            ],
            requests: vec![
                req("s", "CT", 20, Priority::Stat, 0),
                req("u", "CT", 20, Priority::Urgent, 0),
                req("r", "CT", 10, Priority::Routine, 0),
                req("x", "CT", 10, Priority::Routine, 0),
            ],
            busy: vec![],
            horizon_end: 100,
        };
        let pl = |id: &str, r: &str, s: i64, e: i64| Placement {
            request_id: id.into(),
            resource_id: r.into(),
            start: s,
            end: e,
        };
        let s = Schedule {
            placements: vec![
                pl("s", "CT-1", 2, 22),
                pl("u", "CT-2", 10, 30),
                pl("r", "CT-1", 30, 40),
            ],
            unplaced: vec![("x".into(), "test".into())],
        };
        check(&p, &s).unwrap();
        let m = evaluate(&p, &s, &Weights::default());
        assert_eq!((m.placed, m.unplaced), (3, 1));
        assert!((m.utilisation - 50.0 / 200.0).abs() < 1e-12);
        assert!((m.mean_wait_min - 14.0).abs() < 1e-12);
        assert_eq!(m.stat_mean_wait_min, 2.0);
        assert_eq!(m.urgent_mean_wait_min, 10.0);
        assert_eq!(m.makespan_end, Some(40));
        assert_eq!(m.objective, 2.0 * 50.0 + 10.0 * 5.0 + 30.0 + 100_000.0);
    }

    #[test]
    fn generated_week_has_the_documented_shape() {
        let p = generate_week(3, 1000, 10_000);
        assert_eq!(p.resources.len(), 7);
        assert_eq!(p.requests.len(), 1000);
        assert_eq!(p.horizon_end, 10_000 + 7 * MINUTES_PER_DAY);
        let count = |pr: Priority| p.requests.iter().filter(|q| q.priority == pr).count();
        assert!((60..=140).contains(&count(Priority::Stat)));
        assert!((180..=320).contains(&count(Priority::Urgent)));
        assert!(
            p.requests
                .iter()
                .all(|q| q.release >= 10_000 && q.release < p.horizon_end)
        );
        assert!(!p.busy.is_empty());
        // Existing bookings lie inside the opening hours and never overlap.
        let empty = Schedule::default();
        check(&p, &empty).unwrap();
        for r in &p.resources {
            let mut b: Vec<_> = p
                .busy
                .iter()
                .filter(|b| b.resource_id == r.id)
                .map(|b| (b.start, b.end))
                .collect();
            b.sort_unstable();
            assert!(b.windows(2).all(|w| w[0].1 <= w[1].0));
            assert!(
                b.iter()
                    .all(|&(s, e)| r.open.iter().any(|&(ws, we)| ws <= s && e <= we))
            );
        }
        assert_eq!(generate_week(3, 1000, 10_000), p);
        assert_ne!(generate_week(4, 1000, 10_000), p);
    }

    #[test]
    fn all_algorithms_are_feasible_on_generated_weeks() {
        for (seed, n) in [(1, 150), (2, 400), (3, 900)] {
            let p = generate_week(seed, n, 0);
            for (name, s) in all_algorithms(&p) {
                check(&p, &s).unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"));
                assert_eq!(s.placements.len() + s.unplaced.len(), n, "{name}");
            }
        }
    }

    #[test]
    fn optimiser_is_never_worse_than_its_greedy_start() {
        let w = Weights::default();
        for seed in 1..=4 {
            let p = generate_week(seed, 120 * seed as usize, 0);
            let g = evaluate(&p, &greedy(&p), &w).objective;
            for it in [0, 200, 2_000] {
                let opts = Options {
                    max_iterations: it,
                    time_budget: None,
                    seed,
                };
                let s = optimise(&p, &w, &opts);
                check(&p, &s).unwrap();
                let o = evaluate(&p, &s, &w).objective;
                assert!(o <= g, "seed {seed}, {it} iterations: {o} > greedy {g}");
            }
        }
    }

    #[test]
    fn optimiser_beats_first_fit_on_a_500_order_week() {
        let w = Weights::default();
        let p = generate_week(42, 500, 0);
        let ff = evaluate(&p, &first_fit(&p), &w);
        let g = evaluate(&p, &greedy(&p), &w);
        let s = optimise(&p, &w, &quick());
        check(&p, &s).unwrap();
        let o = evaluate(&p, &s, &w);
        assert!(o.objective < ff.objective, "{o:?} vs first-fit {ff:?}");
        assert!(o.objective < g.objective, "{o:?} vs greedy {g:?}");
        assert!(
            o.stat_mean_wait_min < ff.stat_mean_wait_min,
            "{o:?} vs {ff:?}"
        );
        assert!(o.placed >= ff.placed);
        // The generated load makes first-fit keep STAT patients waiting.
        assert!(ff.stat_mean_wait_min > 30.0, "{ff:?}");
    }

    #[test]
    fn optimiser_is_deterministic_for_a_seed() {
        let p = generate_week(9, 300, 0);
        let w = Weights::default();
        let a = optimise(&p, &w, &quick());
        let b = optimise(&p, &w, &quick());
        assert_eq!(a, b);
        assert_eq!(first_fit(&p), first_fit(&p));
    }
}
