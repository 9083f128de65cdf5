//! Rotation algebra: Euler angles (Rz·Ry·Rx), their derivatives, matrix helpers.

use super::M3;
use crate::volume::dot;

// ---------------------------------------------------------------------------------------------
// Rotation algebra
// ---------------------------------------------------------------------------------------------

pub(super) const IDENTITY: M3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

pub(super) fn transpose(m: &M3) -> M3 {
    let mut t = [[0.0; 3]; 3];
    for (r, row) in m.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            t[c][r] = *v;
        }
    }
    t
}

pub(super) fn mat_mul(a: &M3, b: &M3) -> M3 {
    let bt = transpose(b);
    let mut m = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = dot(a[r], bt[c]);
        }
    }
    m
}

pub(super) fn rot_x(a: f64) -> M3 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}
pub(super) fn rot_y(a: f64) -> M3 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}
pub(super) fn rot_z(a: f64) -> M3 {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}
/// Derivatives of the elementary rotations.
pub(super) fn drot_x(a: f64) -> M3 {
    let (s, c) = a.sin_cos();
    [[0.0, 0.0, 0.0], [0.0, -s, -c], [0.0, c, -s]]
}
pub(super) fn drot_y(a: f64) -> M3 {
    let (s, c) = a.sin_cos();
    [[-s, 0.0, c], [0.0, 0.0, 0.0], [-c, 0.0, -s]]
}
pub(super) fn drot_z(a: f64) -> M3 {
    let (s, c) = a.sin_cos();
    [[-s, -c, 0.0], [c, -s, 0.0], [0.0, 0.0, 0.0]]
}

/// `Rz(γ)·Ry(β)·Rx(α)`.
pub(super) fn euler_matrix([a, b, g]: [f64; 3]) -> M3 {
    mat_mul(&rot_z(g), &mat_mul(&rot_y(b), &rot_x(a)))
}

/// `∂R/∂α, ∂R/∂β, ∂R/∂γ` of [`euler_matrix`].
pub(super) fn euler_derivatives([a, b, g]: [f64; 3]) -> [M3; 3] {
    let (rx, ry, rz) = (rot_x(a), rot_y(b), rot_z(g));
    [
        mat_mul(&rz, &mat_mul(&ry, &drot_x(a))),
        mat_mul(&rz, &mat_mul(&drot_y(b), &rx)),
        mat_mul(&drot_z(g), &mat_mul(&ry, &rx)),
    ]
}

/// Inverse of [`euler_matrix`] for a rotation matrix: `R[2][0] = −sin β`.
pub(super) fn matrix_euler(r: &M3) -> [f64; 3] {
    let sb = (-r[2][0]).clamp(-1.0, 1.0);
    let b = sb.asin();
    if sb.abs() < 1.0 - 1e-10 {
        [r[2][1].atan2(r[2][2]), b, r[1][0].atan2(r[0][0])]
    } else {
        // Gimbal lock: only α ∓ γ is defined; put it all in α.
        [r[0][1].atan2(r[1][1]) * sb.signum(), b, 0.0]
    }
}
