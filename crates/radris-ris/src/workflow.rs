//! The order workflow (IHE Scheduled Workflow, seen from the order):
//!
//! ```text
//! ordered ⇄ scheduled → arrived → in_progress → images_complete → preliminary → final → amended
//!              └──────────────────↗     ↘ arrived (MPPS discontinued)        └──────↗   ↺
//! any state before preliminary → cancelled (terminal)
//! ```
//!
//! `scheduled → ordered` is an appointment cancelled or missed; `scheduled → in_progress` is a
//! modality that starts without the arrival being registered; `in_progress → arrived` is an
//! MPPS DISCONTINUED; `images_complete → final` is a report signed without a preliminary;
//! `amended → amended` is a further addendum. Every other move is refused.

use serde::{Deserialize, Serialize};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Ordered,
    Scheduled,
    Arrived,
    InProgress,
    ImagesComplete,
    Preliminary,
    Final,
    Amended,
    Cancelled,
}

impl OrderState {
    pub const ALL: [OrderState; 9] = [
        OrderState::Ordered,
        OrderState::Scheduled,
        OrderState::Arrived,
        OrderState::InProgress,
        OrderState::ImagesComplete,
        OrderState::Preliminary,
        OrderState::Final,
        OrderState::Amended,
        OrderState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Ordered => "ordered",
            OrderState::Scheduled => "scheduled",
            OrderState::Arrived => "arrived",
            OrderState::InProgress => "in_progress",
            OrderState::ImagesComplete => "images_complete",
            OrderState::Preliminary => "preliminary",
            OrderState::Final => "final",
            OrderState::Amended => "amended",
            OrderState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        OrderState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the order may move from `self` to `to`.
    pub fn can_go(self, to: OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, to),
            (Ordered, Scheduled)
                | (Scheduled, Ordered)
                | (Scheduled, Arrived)
                | (Scheduled, InProgress)
                | (Arrived, InProgress)
                | (Arrived, Scheduled)
                | (InProgress, ImagesComplete)
                | (InProgress, Arrived)
                | (ImagesComplete, Preliminary)
                | (ImagesComplete, Final)
                | (Preliminary, Final)
                | (Final, Amended)
                | (Amended, Amended)
                | (
                    Ordered | Scheduled | Arrived | InProgress | ImagesComplete,
                    Cancelled
                )
        )
    }

    /// Check a move, with the reason when it is refused.
    pub fn transition(self, to: OrderState) -> Result<OrderState, IllegalTransition> {
        if self.can_go(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// A reading case: images are in and the final report is not signed yet.
    pub fn awaits_reading(self) -> bool {
        matches!(self, OrderState::ImagesComplete | OrderState::Preliminary)
    }

    /// Images may still arrive and be acquired under the order.
    pub fn before_images(self) -> bool {
        matches!(
            self,
            OrderState::Ordered | OrderState::Scheduled | OrderState::Arrived
        )
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from} to {to}")]
pub struct IllegalTransition {
    pub from: OrderState,
    pub to: OrderState,
}

#[cfg(test)]
mod tests {
    use super::OrderState::*;
    use super::*;

    #[test]
    fn the_happy_path_is_allowed() {
        let path = [
            Ordered,
            Scheduled,
            Arrived,
            InProgress,
            ImagesComplete,
            Preliminary,
            Final,
            Amended,
            Amended,
        ];
        for w in path.windows(2) {
            assert_eq!(w[0].transition(w[1]), Ok(w[1]), "{} → {}", w[0], w[1]);
        }
    }

    #[test]
    fn shortcuts_and_returns() {
        assert!(
            Scheduled.can_go(InProgress),
            "modality starts without arrival"
        );
        assert!(Scheduled.can_go(Ordered), "appointment cancelled");
        assert!(InProgress.can_go(Arrived), "MPPS discontinued");
        assert!(ImagesComplete.can_go(Final), "final without preliminary");
    }

    #[test]
    fn illegal_moves_are_refused_with_both_states() {
        let e = Ordered.transition(Final).unwrap_err();
        assert_eq!(e.to_string(), "illegal transition from ordered to final");
        for (from, to) in [
            (Ordered, Arrived),
            (Ordered, InProgress),
            (Arrived, ImagesComplete),
            (Preliminary, ImagesComplete),
            (Final, Preliminary),
            (Final, Cancelled),
            (Preliminary, Cancelled),
            (Amended, Final),
        ] {
            assert!(!from.can_go(to), "{from} → {to} must be refused");
        }
    }

    #[test]
    fn cancelled_is_terminal_and_reachable_only_before_reporting() {
        for to in OrderState::ALL {
            assert!(!Cancelled.can_go(to), "cancelled → {to}");
        }
        for from in OrderState::ALL {
            let expect = matches!(
                from,
                Ordered | Scheduled | Arrived | InProgress | ImagesComplete
            );
            assert_eq!(from.can_go(Cancelled), expect, "{from} → cancelled");
        }
    }

    #[test]
    fn no_state_moves_to_itself_but_amended() {
        for s in OrderState::ALL {
            assert_eq!(s.can_go(s), s == Amended, "{s} → {s}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in OrderState::ALL {
            assert_eq!(OrderState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderState::parse("done"), None);
    }
}
