//! The RIS: the IHE Scheduled Workflow under RADRIS's workflow automation.
//!
//! * [`workflow`]: the order state machine (ordered → … → final/amended, cancelled).
//! * [`scheduler`]: the auto-scheduler (greedy construction + local search) and the
//!   first-fit baseline it is benchmarked against.
//! * [`routing`]: smart routing of read cases to radiologists, with an explanation.

pub mod demo;
pub mod model;
pub mod routing;
pub mod scheduler;
pub mod service;
pub mod workflow;

pub use service::{Actor, DimseBridge, Ris, RisError};

use serde::{Deserialize, Serialize};

/// Order priority, most urgent first (the derived order sorts STAT before routine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Stat,
    Urgent,
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "stat",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stat" => Some(Priority::Stat),
            "urgent" | "high" => Some(Priority::Urgent),
            "routine" | "low" | "medium" => Some(Priority::Routine),
            _ => None,
        }
    }

    /// Requested Procedure Priority (0040,1003) as modalities expect it.
    pub fn dicom(self) -> &'static str {
        match self {
            Priority::Stat => "STAT",
            Priority::Urgent => "HIGH",
            Priority::Routine => "ROUTINE",
        }
    }
}
