//! Volume-rendering benchmark: 512×512 renders of a 512³ i16 phantom (bone spheres and
//! cylinders in a soft-tissue body in air), three transfer functions × three cameras.
//! `cargo bench -p radris-imaging --bench render` (criterion; a table of per-call medians
//! follows criterion's output). Renders without empty-space skipping are timed once per
//! transfer function, outside criterion, for comparison.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use radris_imaging::render::{
    BrickGrid, Camera, RenderOptions, Renderer, Shading, TransferFunction,
};
use radris_imaging::volume::{Volume, Voxels};
use rayon::prelude::*;

mod common;
use common as timing;

const N: usize = 512;

fn phantom() -> Volume {
    let s = 0.7; // mm
    let mut v = vec![0i16; N * N * N];
    let c = N as f64 / 2.0;
    let spheres = [
        (200.0, 230.0, 260.0, 40.0),
        (330.0, 280.0, 150.0, 25.0),
        (250.0, 320.0, 380.0, 30.0),
    ];
    v.par_chunks_mut(N * N).enumerate().for_each(|(k, slice)| {
        for j in 0..N {
            for i in 0..N {
                let (x, y, z) = (i as f64, j as f64, k as f64);
                let body = (x - c).powi(2) / 220.0f64.powi(2) + (y - c).powi(2) / 180.0f64.powi(2);
                let mut hu = if body <= 1.0 { 40 } else { -1000 };
                // A "spine": a cylinder along z; "ribs": a cylinder along x.
                if (x - c).powi(2) + (y - 330.0).powi(2) <= 30.0f64.powi(2) {
                    hu = 900;
                }
                if (y - 200.0).powi(2) + (z - 300.0).powi(2) <= 12.0f64.powi(2) && body <= 1.0 {
                    hu = 700;
                }
                for &(sx, sy, sz, r) in &spheres {
                    if (x - sx).powi(2) + (y - sy).powi(2) + (z - sz).powi(2) <= r * r {
                        hu = 1200;
                    }
                }
                slice[j * N + i] = (hu + 1024) as i16;
            }
        }
    });
    Volume {
        dims: [N; 3],
        spacing: [s; 3],
        origin: [0.0; 3],
        axes: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        voxels: Voxels::I16(v),
        slope: 1.0,
        intercept: -1024.0,
    }
}

fn render(c: &mut Criterion) {
    let t = Instant::now();
    let vol = phantom();
    println!(
        "phantom {N}³ i16 built in {:.0} ms (outside the timings); rayon threads: {}",
        t.elapsed().as_secs_f64() * 1e3,
        rayon::current_num_threads()
    );
    let medians = timing::Medians::default();
    let mut g = timing::group(c, "render 512^3 i16", 10, 4);
    medians.bench(&mut g, "brick grid (once per volume)", || {
        BrickGrid::new(&vol).ok()
    });
    g.finish();
    let grid = match BrickGrid::new(&vol) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let ext = (N - 1) as f64 * 0.7;
    let centre = [ext / 2.0; 3];
    let anterior = Camera::Orthographic {
        eye: [centre[0], -500.0, centre[2]],
        target: centre,
        up: [0.0, 0.0, 1.0],
        view_width_mm: ext * 1.1,
    };
    let oblique = Camera::fit_orthographic(&vol, [0.6, 1.0, -0.4], [0.0, 0.0, 1.0]);
    let persp = Camera::Perspective {
        eye: [centre[0] + 150.0, -400.0, centre[2] + 100.0],
        target: centre,
        up: [0.0, 0.0, 1.0],
        fov_y_deg: 45.0,
    };
    let mip = match TransferFunction::mip(-200.0, 1300.0) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let cases: Vec<(&str, TransferFunction, Shading)> = vec![
        ("bone Phong", TransferFunction::ct_bone(), Shading::Phong),
        ("bone unshaded", TransferFunction::ct_bone(), Shading::None),
        ("MIP", mip, Shading::None),
    ];
    let mut extra = Vec::new();
    let mut g = timing::group(c, "render 512^3 i16", 10, 4);
    for (name, tf, shading) in &cases {
        let opts = RenderOptions {
            shading: *shading,
            ..Default::default()
        };
        let tp = Instant::now();
        let r = match Renderer::with_grid(&vol, &grid, tf, opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return;
            }
        };
        extra.push(format!(
            "{name}: preparation (LUT, brick flags) {:.2} ms",
            tp.elapsed().as_secs_f64() * 1e3
        ));
        for (cname, cam) in [
            ("anterior", &anterior),
            ("oblique", &oblique),
            ("perspective", &persp),
        ] {
            medians.bench(&mut g, &format!("{name} {cname} 512x512"), || {
                r.render(cam, 512, 512).ok()
            });
        }
        let o = RenderOptions {
            empty_space_skipping: false,
            ..opts
        };
        if let Ok(r) = Renderer::with_grid(&vol, &grid, tf, o) {
            let t = Instant::now();
            let ok = r.render(&anterior, 512, 512).is_ok();
            extra.push(format!(
                "{name}: anterior without empty-space skipping {:.1} ms (once, ok: {ok})",
                t.elapsed().as_secs_f64() * 1e3
            ));
        }
    }
    g.finish();
    medians.print("Volume rendering, 512×512 of a 512³ i16 volume, per call:");
    for line in extra {
        println!("{line}");
    }
}

criterion_group!(benches, render);
criterion_main!(benches);
