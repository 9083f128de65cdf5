//! Analytics: turnaround times per modality and radiologist, queue lengths, reading load and
//! resource utilisation over a time window.

use std::collections::BTreeMap;

use radris_core::TenantId;

use super::{Ris, RisError, n, s};
use crate::model::*;

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64 * 10.0).round() / 10.0)
}

/// Minutes from `a` to `b` when both happened (in order).
fn span(a: i64, b: i64) -> Option<f64> {
    (a > 0 && b >= a).then(|| (b - a) as f64 / 60_000.0)
}

impl Ris {
    /// Analytics of the orders placed in [`from`, `to`).
    pub async fn analytics(
        &self,
        tenant: &TenantId,
        from: Time,
        to: Time,
    ) -> Result<Analytics, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT COALESCE(pr.modality, '') AS modality, o.ordered_at, o.started_at, o.images_at, o.preliminary_at, \
             o.final_at, o.preliminary_by, o.final_by FROM ris_orders o \
             LEFT JOIN ris_procedures pr ON pr.tenant_id = o.tenant_id AND pr.code = o.procedure_code \
             WHERE o.tenant_id = $1 AND o.ordered_at >= $2 AND o.ordered_at < $3 AND o.state <> 'cancelled'",
        )
        .bind(tenant.as_str())
        .bind(from.0)
        .bind(to.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("analytics"))?;
        #[derive(Default)]
        struct Acc {
            n: usize,
            a: Vec<f64>,
            b: Vec<f64>,
            c: Vec<f64>,
            d: Vec<f64>,
        }
        let mut by_mod: BTreeMap<String, Acc> = BTreeMap::new();
        let mut by_reader: BTreeMap<String, Acc> = BTreeMap::new();
        for r in &rows {
            let (ordered, started, images, prelim, fin) = (
                n(r, "ordered_at")?,
                n(r, "started_at")?,
                n(r, "images_at")?,
                n(r, "preliminary_at")?,
                n(r, "final_at")?,
            );
            let m = by_mod.entry(s(r, "modality")?).or_default();
            m.n += 1;
            m.a.extend(span(ordered, started));
            m.b.extend(span(started, if prelim > 0 { prelim } else { fin }));
            m.c.extend(if prelim > 0 { span(prelim, fin) } else { None });
            m.d.extend(span(ordered, fin));
            let reader = {
                let f = s(r, "final_by")?;
                if f.is_empty() {
                    s(r, "preliminary_by")?
                } else {
                    f
                }
            };
            if !reader.is_empty() {
                let x = by_reader.entry(reader).or_default();
                x.n += 1;
                x.a.extend(if prelim > 0 {
                    span(images, prelim)
                } else {
                    None
                });
                x.b.extend(span(images, fin));
            }
        }
        let turnaround = Turnaround {
            by_modality: by_mod
                .into_iter()
                .map(|(modality, a)| ModalityTurnaround {
                    modality,
                    n: a.n,
                    order_to_scan_min: mean(&a.a),
                    scan_to_preliminary_min: mean(&a.b),
                    preliminary_to_final_min: mean(&a.c),
                    order_to_final_min: mean(&a.d),
                })
                .collect(),
            by_radiologist: by_reader
                .into_iter()
                .map(|(radiologist, a)| ReaderTurnaround {
                    radiologist,
                    n: a.n,
                    images_to_preliminary_min: mean(&a.a),
                    images_to_final_min: mean(&a.b),
                })
                .collect(),
        };
        let mut queues = BTreeMap::new();
        for r in sqlx::query(
            "SELECT state, COUNT(*) AS n FROM ris_orders WHERE tenant_id = $1 GROUP BY state",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("queues"))?
        {
            queues.insert(s(&r, "state")?, n(&r, "n")?);
        }
        let reading_load = sqlx::query(
            "SELECT CASE WHEN claimed_by <> '' THEN claimed_by ELSE assigned_to END AS reader, COUNT(*) AS n FROM ris_orders \
             WHERE tenant_id = $1 AND state IN ('images_complete', 'preliminary') GROUP BY 1 ORDER BY 1",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("reading load"))?
        .iter()
        .map(|r| {
            let who = s(r, "reader")?;
            Ok(ReadingLoad {
                radiologist: if who.is_empty() { "(unassigned)".into() } else { who },
                open: n(r, "n")?,
            })
        })
        .collect::<Result<Vec<_>, RisError>>()?;
        let days = ((to.0 - from.0) as f64 / 86_400_000.0).max(0.0);
        let mut utilisation = Vec::new();
        for r in sqlx::query(
            "SELECT r.id, r.name, r.open_from, r.open_to, CAST(COALESCE(SUM(CASE WHEN a.id IS NULL THEN 0 ELSE a.ends_at - a.starts_at END), 0) AS BIGINT) AS booked \
             FROM ris_resources r LEFT JOIN ris_appointments a ON a.tenant_id = r.tenant_id AND a.resource_id = r.id \
             AND a.state IN ('booked', 'arrived', 'in_progress', 'completed') AND a.starts_at >= $1 AND a.starts_at < $2 \
             WHERE r.tenant_id = $3 AND r.kind = 'modality' GROUP BY r.id, r.name, r.open_from, r.open_to ORDER BY r.name",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("utilisation"))?
        {
            let open_min = ((n(&r, "open_to")? - n(&r, "open_from")?) as f64 * days).round() as i64;
            let booked_min = n(&r, "booked")? / 60_000;
            utilisation.push(Utilisation {
                resource_id: s(&r, "id")?,
                name: s(&r, "name")?,
                booked_min,
                open_min,
                utilisation: if open_min > 0 {
                    ((booked_min as f64 / open_min as f64) * 1000.0).round() / 1000.0
                } else {
                    0.0
                },
            });
        }
        Ok(Analytics {
            from,
            to,
            turnaround,
            queues,
            reading_load,
            utilisation,
        })
    }
}
