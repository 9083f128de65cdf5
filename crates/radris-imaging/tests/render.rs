//! Volume rendering on analytic phantoms.

use radris_imaging::render::{
    Camera, CameraPath, RenderError, RenderMode, RenderOptions, Renderer, Shading,
    TransferFunction, render,
};
use radris_imaging::volume::{Volume, Voxels};

const ID: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// A sphere of 1000 HU (stored +2024, intercept −1024) in −1000 HU, centred at patient
/// `centre` (mm), radius `r` mm.
fn sphere(dims: [usize; 3], spacing: [f64; 3], centre: [f64; 3], r: f64) -> Volume {
    let mut v = Vec::with_capacity(dims[0] * dims[1] * dims[2]);
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = [
                    i as f64 * spacing[0] - centre[0],
                    j as f64 * spacing[1] - centre[1],
                    k as f64 * spacing[2] - centre[2],
                ];
                let inside = p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= r * r;
                v.push(if inside { 2024 } else { 24 });
            }
        }
    }
    Volume {
        dims,
        spacing,
        origin: [0.0; 3],
        axes: ID,
        voxels: Voxels::I16(v),
        slope: 1.0,
        intercept: -1024.0,
    }
}

fn test_sphere() -> Volume {
    // 64×64×48 voxels of 1×1×1.5 mm: 63×63×70.5 mm; sphere r = 15 at (30, 34, 36).
    sphere([64, 64, 48], [1.0, 1.0, 1.5], [30.0, 34.0, 36.0], 15.0)
}

/// Camera looking along +z (feet to head), image x = +x, image y = +y (down).
fn ortho_z(width_mm: f64, cx: f64, cy: f64) -> Camera {
    Camera::Orthographic {
        eye: [cx, cy, -100.0],
        target: [cx, cy, 0.0],
        up: [0.0, -1.0, 0.0],
        view_width_mm: width_mm,
    }
}

/// Measures the extent of pixels whose red channel exceeds `level` along the middle row and
/// column through (cx, cy), in pixels.
fn disc_extent(img: &radris_imaging::render::RgbaImage, level: u8) -> (usize, usize, f64, f64) {
    let (mut n, mut sx, mut sy) = (0usize, 0.0, 0.0);
    let mut cols = std::collections::BTreeSet::new();
    let mut rows = std::collections::BTreeSet::new();
    for y in 0..img.height {
        for x in 0..img.width {
            if img.pixel(x, y).map(|p| p[0]).unwrap_or(0) > level {
                n += 1;
                sx += x as f64;
                sy += y as f64;
                cols.insert(x);
                rows.insert(y);
            }
        }
    }
    (
        cols.len(),
        rows.len(),
        sx / n.max(1) as f64,
        sy / n.max(1) as f64,
    )
}

#[test]
fn mip_of_sphere_is_a_disc_of_the_right_radius_and_place() {
    let vol = test_sphere();
    let tf = TransferFunction::mip(-1000.0, 1000.0).unwrap();
    assert_eq!(tf.mode, RenderMode::Mip);
    // 1 pixel = 0.5 mm, view centred at (32, 32).
    let img = render(
        &vol,
        &ortho_z(64.0, 32.0, 32.0),
        &tf,
        128,
        128,
        RenderOptions::default(),
    )
    .unwrap();
    let (w, h, cx, cy) = disc_extent(&img, 128);
    // Diameter 30 mm = 60 px (±2 px for voxelisation), centre (30, 34) mm → px (60, 68) − 0.5.
    assert!((w as f64 - 60.0).abs() <= 3.0, "width {w}");
    assert!((h as f64 - 60.0).abs() <= 3.0, "height {h}");
    assert!((cx - 59.5).abs() < 1.0, "cx {cx}");
    assert!((cy - 67.5).abs() < 1.0, "cy {cy}");
    // Pixels outside the volume are transparent; inside but off the sphere, black and opaque.
    assert_eq!(img.pixel(127, 127).unwrap()[3], 0);
    assert_eq!(img.pixel(10, 10).unwrap(), [0, 0, 0, 255]);
    assert_eq!(img.pixel(60, 68).unwrap(), [255, 255, 255, 255]);
}

#[test]
fn bone_render_is_opaque_in_the_middle_and_transparent_outside() {
    let vol = test_sphere();
    let img = render(
        &vol,
        &ortho_z(64.0, 32.0, 32.0),
        &TransferFunction::ct_bone(),
        128,
        128,
        RenderOptions::default(),
    )
    .unwrap();
    let mid = img.pixel(60, 68).unwrap();
    assert!(mid[3] >= 250, "middle alpha {}", mid[3]);
    assert!(mid[0] > 100, "middle is lit: {mid:?}");
    for (x, y) in [(5, 5), (120, 10), (60, 120), (20, 68), (100, 68)] {
        assert_eq!(img.pixel(x, y).unwrap()[3], 0, "pixel ({x}, {y})");
    }
}

#[test]
fn perspective_size_matches_orthographic_at_the_focal_distance() {
    let vol = test_sphere();
    let tf = TransferFunction::mip(-1000.0, 1000.0).unwrap();
    let opts = RenderOptions::default();
    let ortho = render(&vol, &ortho_z(64.0, 30.0, 34.0), &tf, 128, 128, opts).unwrap();
    // Eye at distance D from the sphere centre with fov such that the view spans 64 mm at D:
    // the disc appears as large as the sphere's silhouette radius r·D/√(D²−r²) there.
    let d = 120.0;
    let fov = 2.0 * (32.0f64 / d).atan().to_degrees();
    let persp = Camera::Perspective {
        eye: [30.0, 34.0, 36.0 - d],
        target: [30.0, 34.0, 36.0],
        up: [0.0, -1.0, 0.0],
        fov_y_deg: fov,
    };
    let p = render(&vol, &persp, &tf, 128, 128, opts).unwrap();
    let (wo, _, _, _) = disc_extent(&ortho, 128);
    let (wp, _, cxp, cyp) = disc_extent(&p, 128);
    let r = 15.0;
    let silhouette = r * d / (d * d - r * r).sqrt();
    let expected = wo as f64 * silhouette / r;
    assert!(
        (wp as f64 - expected).abs() <= 3.0,
        "ortho {wo}, persp {wp}, expected {expected}"
    );
    assert!((cxp - 63.5).abs() < 1.0 && (cyp - 63.5).abs() < 1.0);
    // Farther away → smaller.
    let far = Camera::Perspective {
        eye: [30.0, 34.0, 36.0 - 2.0 * d],
        target: [30.0, 34.0, 36.0],
        up: [0.0, -1.0, 0.0],
        fov_y_deg: fov,
    };
    let (wf, _, _, _) = disc_extent(&render(&vol, &far, &tf, 128, 128, opts).unwrap(), 128);
    assert!(
        (wf as f64 - wp as f64 / 2.0).abs() <= 3.0,
        "far {wf} vs near {wp}"
    );
}

#[test]
fn empty_space_skipping_does_not_change_the_image() {
    let vol = sphere([70, 60, 50], [0.8, 0.9, 1.3], [27.0, 25.0, 33.0], 12.0);
    let cams = [
        Camera::Orthographic {
            eye: [-50.0, -40.0, -60.0],
            target: [27.0, 25.0, 33.0],
            up: [0.0, 0.0, 1.0],
            view_width_mm: 80.0,
        },
        Camera::Perspective {
            eye: [27.0, -60.0, 30.0],
            target: [27.0, 25.0, 33.0],
            up: [0.0, 0.0, 1.0],
            fov_y_deg: 40.0,
        },
    ];
    let tfs = [
        TransferFunction::ct_bone(),
        TransferFunction::ct_soft_tissue(),
        TransferFunction::ct_angio(),
        TransferFunction::ct_lung(),
        TransferFunction::mip(-500.0, 800.0).unwrap(),
    ];
    for cam in &cams {
        for tf in &tfs {
            let on = RenderOptions::default();
            let off = RenderOptions {
                empty_space_skipping: false,
                ..on
            };
            let a = render(&vol, cam, tf, 96, 80, on).unwrap();
            let b = render(&vol, cam, tf, 96, 80, off).unwrap();
            let worst = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| x.abs_diff(*y))
                .max();
            assert!(worst <= Some(1), "max difference {worst:?}");
            assert!(a.data.iter().any(|&x| x > 0), "something is drawn");
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let vol = test_sphere();
    let tf = TransferFunction::ct_bone();
    let cam = Camera::fit_orthographic(&vol, [1.0, 0.7, 0.3], [0.0, 0.0, 1.0]);
    let r = Renderer::new(&vol, &tf, RenderOptions::default()).unwrap();
    let a = r.render(&cam, 100, 90).unwrap();
    for _ in 0..3 {
        assert_eq!(a, r.render(&cam, 100, 90).unwrap());
    }
    assert_eq!(
        a,
        render(&vol, &cam, &tf, 100, 90, RenderOptions::default()).unwrap()
    );
}

#[test]
fn shading_modes_and_u16_f32_voxels_render() {
    let vol = test_sphere();
    let cam = ortho_z(64.0, 32.0, 32.0);
    let tf = TransferFunction::ct_bone();
    let mut imgs = Vec::new();
    for shading in [Shading::None, Shading::Lambert, Shading::Phong] {
        let opts = RenderOptions {
            shading,
            ..Default::default()
        };
        imgs.push(render(&vol, &cam, &tf, 64, 64, opts).unwrap());
    }
    // Unshaded is flat; shading darkens the rim relative to the centre.
    let rim = |img: &radris_imaging::render::RgbaImage| img.pixel(30, 20).unwrap()[0];
    assert!(rim(&imgs[1]) < rim(&imgs[0]));
    // Same phantom as u16 and f32 gives the same MIP.
    let Voxels::I16(v) = &vol.voxels else {
        unreachable!()
    };
    let as_u16 = Volume {
        voxels: Voxels::U16(v.iter().map(|&x| x as u16).collect()),
        ..vol.clone()
    };
    let as_f32 = Volume {
        voxels: Voxels::F32(v.iter().map(|&x| x as f32).collect()),
        ..vol.clone()
    };
    let mip = TransferFunction::mip(-1000.0, 1000.0).unwrap();
    let o = RenderOptions::default();
    let a = render(&vol, &cam, &mip, 64, 64, o).unwrap();
    assert_eq!(a, render(&as_u16, &cam, &mip, 64, 64, o).unwrap());
    assert_eq!(a, render(&as_f32, &cam, &mip, 64, 64, o).unwrap());
}

#[test]
fn errors_are_typed() {
    let vol = test_sphere();
    let tf = TransferFunction::ct_bone();
    let o = RenderOptions::default();
    assert_eq!(
        render(&vol, &ortho_z(64.0, 0.0, 0.0), &tf, 0, 10, o),
        Err(RenderError::EmptyImage(0, 10))
    );
    let bad = Camera::Perspective {
        eye: [0.0; 3],
        target: [0.0; 3],
        up: [0.0, 0.0, 1.0],
        fov_y_deg: 40.0,
    };
    assert!(matches!(
        render(&vol, &bad, &tf, 8, 8, o),
        Err(RenderError::Camera(_))
    ));
    let short = Volume {
        voxels: Voxels::I16(vec![0; 10]),
        ..vol.clone()
    };
    assert!(matches!(
        render(&short, &ortho_z(64.0, 0.0, 0.0), &tf, 8, 8, o),
        Err(RenderError::VoxelCount { .. })
    ));
    assert!(TransferFunction::mip(5.0, 5.0).is_err());
    assert!(TransferFunction::new(vec![]).is_err());
    assert_eq!(
        CameraPath::new(vec![[1.0; 3], [1.0; 3]], [0.0, 0.0, 1.0], 60.0, 5.0),
        Err(RenderError::PathTooShort)
    );
}

#[test]
fn transfer_function_interpolates() {
    let tf = TransferFunction::ct_bone();
    let (_, a) = tf.eval(0.0);
    assert_eq!(a, 0.0);
    let (_, a) = tf.eval(225.0);
    assert!((a - 0.1).abs() < 1e-6);
    let (_, a) = tf.eval(5000.0);
    assert!((a - 0.8).abs() < 1e-6);
}

#[test]
fn fly_through_frames_follow_the_path() {
    let path = CameraPath::new(
        vec![[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, 0.0]],
        [0.0, 0.0, 1.0],
        60.0,
        2.0,
    )
    .unwrap();
    assert_eq!(path.length(), 20.0);
    let frames = path.frames(5);
    assert_eq!(frames.len(), 5);
    let eyes: Vec<[f64; 3]> = frames
        .iter()
        .map(|c| match c {
            Camera::Perspective { eye, .. } => *eye,
            Camera::Orthographic { eye, .. } => *eye,
        })
        .collect();
    assert_eq!(eyes[0], [0.0, 0.0, 0.0]);
    assert_eq!(eyes[2], [10.0, 0.0, 0.0]);
    assert_eq!(eyes[4], [10.0, 10.0, 0.0]);
    let Camera::Perspective { target, .. } = frames[1] else {
        panic!()
    };
    assert_eq!(target, [7.0, 0.0, 0.0]);
    // At the corner the target is already around it; at the end it extrapolates.
    let Camera::Perspective { target, .. } = frames[2] else {
        panic!()
    };
    assert_eq!(target, [10.0, 2.0, 0.0]);
    let Camera::Perspective { target, .. } = frames[4] else {
        panic!()
    };
    assert_eq!(target, [10.0, 12.0, 0.0]);
    assert!(path.frames(0).is_empty());
    // Every frame renders inside a hollow tube without error.
    let vol = sphere([24, 24, 8], [1.0; 3], [12.0, 12.0, 4.0], 30.0);
    let tf = TransferFunction::ct_bone();
    let r = Renderer::new(&vol, &tf, RenderOptions::default()).unwrap();
    for c in path.frames(4) {
        r.render(&c, 16, 16).unwrap();
    }
}

#[test]
fn rotated_axes_place_the_sphere_in_patient_space() {
    let mut vol = test_sphere();
    // Rotate the grid 90° about z: voxel (i, j, k) sits at (−j, i, 1.5·k) mm.
    vol.axes = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let tf = TransferFunction::mip(-1000.0, 1000.0).unwrap();
    let img = render(
        &vol,
        &ortho_z(64.0, -34.0, 30.0),
        &tf,
        128,
        128,
        RenderOptions::default(),
    )
    .unwrap();
    let (w, h, cx, cy) = disc_extent(&img, 128);
    assert!((w as f64 - 60.0).abs() <= 3.0 && (h as f64 - 60.0).abs() <= 3.0);
    assert!(
        (cx - 63.5).abs() < 1.0 && (cy - 63.5).abs() < 1.0,
        "({cx}, {cy})"
    );
}

#[test]
fn a_brick_grid_from_another_volume_is_rejected() {
    let a = test_sphere();
    let b = sphere([16, 16, 16], [1.0; 3], [8.0; 3], 4.0);
    let grid = radris_imaging::render::BrickGrid::new(&b).unwrap();
    assert!(matches!(
        Renderer::with_grid(
            &a,
            &grid,
            &TransferFunction::ct_bone(),
            RenderOptions::default()
        ),
        Err(RenderError::GridMismatch)
    ));
}
