//! Events the archive publishes on the in-process bus. AI pipelines, RIS reconciliation,
//! routing and webhooks subscribe here; the multi-node deployment will carry the same events
//! over NATS.

use crate::{AeTitle, TenantId, Uid};

/// Something that happened in the archive. Events carry identifiers, never PHI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An instance became durable and indexed (the success status has been or is being sent).
    InstanceStored {
        tenant: TenantId,
        study_uid: Uid,
        series_uid: Uid,
        sop_instance_uid: Uid,
        /// The calling AE for DIMSE, `None` for local import.
        source: Option<AeTitle>,
    },
    /// A study, series or instance was deleted.
    Deleted { tenant: TenantId, uid: Uid },
    /// An order of the RIS changed state (`from`/`to` are the workflow state names:
    /// `ordered`, `scheduled`, `arrived`, `in_progress`, `images_complete`, `preliminary`,
    /// `final`, `amended`, `cancelled`).
    OrderChanged {
        tenant: TenantId,
        order_id: String,
        accession: String,
        from: String,
        to: String,
    },
    /// A reading case was routed (`user` empty: to the group's common list).
    ReadingAssigned {
        tenant: TenantId,
        order_id: String,
        user: String,
        group: String,
    },
    /// A STAT case stayed unread longer than the tenant allows.
    StatEscalated {
        tenant: TenantId,
        order_id: String,
        accession: String,
    },
}

/// A broadcast bus of [`Event`]s. Slow subscribers lose old events (they see a `Lagged`
/// error) rather than slowing ingest down.
#[derive(Clone)]
pub struct EventBus {
    sender: tokio::sync::broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = tokio::sync::broadcast::channel(capacity.max(1));
        EventBus { sender }
    }

    /// Publish an event; having no subscriber is not an error.
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(4096)
    }
}
