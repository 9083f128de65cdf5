//! MPR timings on a 512³ i16 volume (smooth pseudo-random data): oblique and axial 512²
//! reslices and 20 mm MIP slabs. `cargo bench -p radris-imaging --bench mpr` (criterion;
//! a table of per-call medians follows criterion's output). `benches/scipy_reslice.py` and
//! `benches/simpleitk_reslice.py` time the same oblique reslice in scipy and SimpleITK.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use radris_imaging::mpr::{Plane, SlabMode, reslice, slab};
use radris_imaging::volume::{Volume, Voxels};
use rayon::prelude::*;

mod common;
use common as timing;

const N: usize = 512;

/// The volume of `scipy_reslice.py` / `simpleitk_reslice.py` (same formula, same truncation).
fn volume() -> Volume {
    // Sum of a few separable low-frequency waves plus a coupled term: smooth, not constant.
    let t = |f: f64, ph: f64| -> Vec<f64> {
        (0..N)
            .map(|i| (i as f64 * f + ph).sin())
            .collect::<Vec<f64>>()
    };
    let (ax, ay, az) = (t(0.031, 0.3), t(0.027, 1.1), t(0.043, 2.0));
    let (bx, by, bz) = (t(0.11, 0.7), t(0.093, 0.2), t(0.071, 1.5));
    let mut v = vec![0i16; N * N * N];
    v.par_chunks_mut(N * N).enumerate().for_each(|(k, sl)| {
        for j in 0..N {
            for i in 0..N {
                let x = 400.0 * (ax[i] + ay[j] + az[k]) + 150.0 * bx[i] * by[j] * bz[k];
                sl[i + N * j] = x as i16;
            }
        }
    });
    Volume {
        dims: [N, N, N],
        spacing: [0.7, 0.7, 0.8],
        origin: [0.0; 3],
        axes: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        voxels: Voxels::I16(v),
        slope: 1.0,
        intercept: -1024.0,
    }
}

fn mpr(c: &mut Criterion) {
    let t = Instant::now();
    let vol = volume();
    let centre = vol.index_to_patient([255.5, 255.5, 255.5]);
    println!(
        "512³ i16 volume built in {:.0} ms (outside the timings); rayon threads: {}",
        t.elapsed().as_secs_f64() * 1e3,
        rayon::current_num_threads()
    );
    let oblique = match Plane::oblique(centre, [0.3, 0.5, 0.81], [0.0, 0.0, 1.0], [512, 512], 0.7) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("plane: {e}");
            return;
        }
    };
    let axial = Plane::axial(centre, 512, 512, 0.7);
    if let Ok(img) = reslice(&vol, &oblique) {
        let nan = img.data.iter().filter(|x| x.is_nan()).count();
        println!("oblique: {nan} of {} pixels outside", img.data.len());
    }
    let medians = timing::Medians::default();
    let mut g = timing::group(c, "mpr 512^3 i16", 50, 3);
    medians.bench(&mut g, "oblique reslice 512x512", || {
        black_box(reslice(&vol, &oblique).ok())
    });
    medians.bench(&mut g, "axial reslice 512x512", || {
        black_box(reslice(&vol, &axial).ok())
    });
    g.finish();
    let mut g = timing::group(c, "mpr slab 512^3 i16", 10, 4);
    medians.bench(&mut g, "axial slab MIP 20 mm 512x512", || {
        black_box(slab(&vol, &axial, 20.0, SlabMode::Mip).ok())
    });
    medians.bench(&mut g, "oblique slab MIP 20 mm 512x512", || {
        black_box(slab(&vol, &oblique, 20.0, SlabMode::Mip).ok())
    });
    medians.bench(&mut g, "oblique slab average 20 mm 512x512", || {
        black_box(slab(&vol, &oblique, 20.0, SlabMode::Average).ok())
    });
    g.finish();
    medians.print("MPR, 512³ i16 volume, per call:");
}

criterion_group!(benches, mpr);
criterion_main!(benches);
