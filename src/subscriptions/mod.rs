//! Subscriptions: commitments, tacit renewal, cancellation with notice, early
//! termination, activation on first payment, add-on packs sharing their parent's terms.
//! The calendar is the pure [`schedule`]; persistence and jobs are in [`store`].

pub mod schedule;
pub mod store;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use schedule::{EarlyTermination, Period, Plan, Term};

crate::text_enum! {
    /// Where a subscription stands. `pending_payment` → `active` (first payment) → `ended`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum SubscriptionStatus {
        PendingPayment = "pending_payment",
        Active = "active",
        Ended = "ended",
    }
}

crate::text_enum! {
    /// What happened to a subscription, in order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum EventKind {
        Created = "created",
        Activated = "activated",
        Renewed = "renewed",
        CancellationReceived = "cancellation_received",
        Terminated = "terminated",
        Ended = "ended",
        /// The first payment came back (a returned SEPA collection): it waits for its
        /// first payment again.
        ActivationReversed = "activation_reversed",
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionEvent {
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    /// For `renewed`: the term that began.
    pub term_index: Option<i32>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A subscription with what its schedule says now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub offer_code: String,
    /// The subscription an add-on pack is attached to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<Uuid>,
    pub status: SubscriptionStatus,
    /// The date (Europe/Paris) periods and terms count from; none until activation.
    pub anchor_date: Option<NaiveDate>,
    pub start_date: NaiveDate,
    /// When a cancellation was recorded.
    pub cancel_received_at: Option<DateTime<Utc>>,
    /// The day (Europe/Paris) the cancellation notice was received: the notice deadline
    /// was checked against it.
    pub cancel_received_on: Option<NaiveDate>,
    /// When the subscription ends (or ended): fixed by a cancellation or a termination.
    pub ends_at: Option<DateTime<Utc>>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// The day (Europe/Paris) the termination notice was received.
    pub termination_received_on: Option<NaiveDate>,
    /// The term in progress now (for an add-on, its parent's).
    pub current_term: Option<Term>,
    /// The last day a cancellation stops the renewal at the current term's end.
    pub notice_deadline: Option<NaiveDate>,
    /// When the next tacit renewal happens, unless the subscription is ending.
    pub next_renewal_date: Option<NaiveDate>,
    /// What terminating now would cost.
    pub early_termination_if_now: Option<EarlyTermination>,
    pub history: Vec<SubscriptionEvent>,
    pub created_at: DateTime<Utc>,
}

/// A new subscription.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"customer_id": "0193e0a0-0000-7000-8000-000000000001", "offer_code": "ip_access_fibre", "start_date": "2026-12-01"}))]
pub struct NewSubscription {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    #[schema(max_length = 64)]
    pub offer_code: String,
    /// First day (Europe/Paris), within 10 years of today; defaults to today. Ignored for
    /// offers activated on payment, which start on the payment's value date.
    #[serde(default, deserialize_with = "crate::input::opt_date")]
    pub start_date: Option<NaiveDate>,
    /// For an add-on pack: the subscription it attaches to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<Uuid>,
}

/// Why a subscription operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error("customer {0} is not active")]
    CustomerNotActive(Uuid),
    #[error("customer {0} is closed: its account is read-only")]
    CustomerClosed(Uuid),
    #[error("offer `{0}` does not exist")]
    UnknownOffer(String),
    #[error("offer `{0}` is not a subscription (one-off or metered)")]
    NotRecurring(String),
    #[error("offer `{0}` has no price on {1}")]
    NoPrice(String, NaiveDate),
    #[error(
        "offer `{0}` is collected by SEPA direct debit: the customer needs an active mandate first"
    )]
    SepaMandateRequired(String),
    #[error("offer `{0}` is an add-on pack: give the parent subscription (`parent_id`)")]
    ParentRequired(String),
    #[error("offer `{0}` is not an add-on pack: it takes no parent")]
    ParentNotAllowed(String),
    #[error(
        "parent subscription {0} does not exist, belongs to another customer, or is not active"
    )]
    BadParent(Uuid),
    #[error("an add-on billed every {0} month(s) does not fit its parent's terms")]
    AddonDoesNotFit(u32),
    #[error("subscription {0} does not exist")]
    NotFound(Uuid),
    #[error("subscription {0} is {1}")]
    WrongState(Uuid, &'static str),
    /// The day a notice was received cannot be: why.
    #[error("{0}")]
    ReceivedOn(String),
    #[error("the idempotency key was already used for a different subscription")]
    IdempotencyConflict,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
