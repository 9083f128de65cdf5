//! Building a volume from 500 in-memory 512×512 i16 slices (shuffled, so the sort is
//! included) with `volume::build`: the build step behind the "cached 500-slice series in
//! ≤ 1 s" target (decoding is not included). `cargo bench -p radris-imaging --bench
//! volume_build`.

use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use radris_imaging::volume::{BuildOptions, Slice, SlicePixels, build};

mod common;
use common as timing;

const SIZE: usize = 512;
const COUNT: usize = 500;

fn slices() -> Vec<Slice> {
    let mut order: Vec<usize> = (0..COUNT).collect();
    // A fixed permutation (multiplicative step coprime with COUNT).
    order.iter_mut().for_each(|k| *k = (*k * 257 + 31) % COUNT);
    order
        .into_iter()
        .map(|k| {
            let pixels: Vec<i16> = (0..SIZE * SIZE)
                .map(|i| ((i % SIZE + i / SIZE + 3 * k) % 2000) as i16 - 1000)
                .collect();
            Slice {
                position: [-179.0, -179.0, -300.0 + 0.625 * k as f64],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                pixel_spacing: [0.7, 0.7],
                rows: SIZE,
                cols: SIZE,
                pixels: SlicePixels::I16(pixels),
                slope: 1.0,
                intercept: -1024.0,
                frame_of_reference: "1.2.826.0.1.3680043.8.498.1".into(),
            }
        })
        .collect()
}

fn volume_build(c: &mut Criterion) {
    let t = Instant::now();
    let series = slices();
    println!(
        "{COUNT} slices of {SIZE}² i16 made in {:.0} ms (outside the timings)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let opts = BuildOptions::default();
    match build(series.clone(), &opts) {
        Ok((vol, report)) => println!(
            "volume {:?}, spacing {:.3} mm, {} gaps",
            vol.dims,
            report.spacing_mm,
            report.gaps.len()
        ),
        Err(e) => {
            eprintln!("build: {e}");
            return;
        }
    }
    let medians = timing::Medians::default();
    let mut g = timing::group(c, "volume build", 10, 5);
    // The clone of the slices (the input `build` consumes) is set-up, not timed.
    let mut ms = Vec::new();
    g.bench_function("build 500 x 512x512 i16", |b| {
        b.iter_batched(
            || series.clone(),
            |s| {
                let t = Instant::now();
                let r = build(s, &opts).ok();
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                r
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    medians.record("build 500 x 512x512 i16", ms);
    medians.print("Volume build, per call (dropping the volume not included):");
}

criterion_group!(benches, volume_build);
criterion_main!(benches);
