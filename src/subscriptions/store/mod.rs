//! Subscriptions in the database: the use cases that create and change them
//! (`lifecycle`), what the API shows of them (`views`), and the `renewals` and `billing`
//! jobs (`jobs`). This file holds the row access they share; the rules are in
//! [`super::schedule`].

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::*;
use crate::catalog::{self, Offer};
use crate::idempotency::KeyReused;
use crate::schema::{subscription_events, subscriptions};

mod jobs;
mod lifecycle;
mod views;

pub use jobs::*;
pub use lifecycle::*;
pub use views::*;

impl From<KeyReused> for SubscriptionError {
    fn from(_: KeyReused) -> Self {
        SubscriptionError::IdempotencyConflict
    }
}

impl crate::db::Retryable for SubscriptionError {
    fn is_retryable(&self) -> bool {
        matches!(self, SubscriptionError::Database(e) if crate::db::is_retryable(e))
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
struct SubRow {
    id: Uuid,
    customer_id: Uuid,
    offer_code: String,
    parent_id: Option<Uuid>,
    status: SubscriptionStatus,
    anchor_date: Option<NaiveDate>,
    start_date: NaiveDate,
    cancel_received_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    terminated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    cancel_received_on: Option<NaiveDate>,
    termination_received_on: Option<NaiveDate>,
}

async fn row(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lock: bool,
) -> Result<SubRow, SubscriptionError> {
    let q = subscriptions::table.find(id).select(SubRow::as_select());
    let found = if lock {
        q.for_update().first(conn).await
    } else {
        q.first(conn).await
    };
    found.optional()?.ok_or(SubscriptionError::NotFound(id))
}

async fn offer(conn: &mut AsyncPgConnection, code: &str) -> Result<Offer, SubscriptionError> {
    catalog::store::get(conn, code)
        .await?
        .ok_or_else(|| SubscriptionError::UnknownOffer(code.to_string()))
}

/// The plan of a subscription (an add-on's terms are its parent's), with its offer; no
/// plan while it waits for its first payment.
async fn plan_of(
    conn: &mut AsyncPgConnection,
    sub: &SubRow,
) -> Result<Option<(Plan, Offer)>, SubscriptionError> {
    let own = offer(conn, &sub.offer_code).await?;
    let Some(anchor) = sub.anchor_date else {
        return Ok(None);
    };
    let billing_months = own
        .billing_period
        .months()
        .ok_or_else(|| SubscriptionError::NotRecurring(own.code.clone()))?;
    let terms = match sub.parent_id {
        Some(parent) => {
            let parent = row(conn, parent, false).await?;
            offer(conn, &parent.offer_code).await?
        }
        None => own.clone(),
    };
    let plan = Plan {
        anchor,
        billing_months,
        commitment_months: terms.commitment_months as u32,
        renewal_months: terms.renewal_months as u32,
        notice_days: terms.notice_days as u32,
        start: sub.start_date,
    };
    Ok(Some((plan, own)))
}

async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    kind: EventKind,
    at: DateTime<Utc>,
    term_index: Option<i32>,
    detail: serde_json::Value,
) -> Result<bool, diesel::result::Error> {
    let n = diesel::insert_into(subscription_events::table)
        .values((
            subscription_events::subscription_id.eq(id),
            subscription_events::kind.eq(kind.as_str()),
            subscription_events::at.eq(at),
            subscription_events::term_index.eq(term_index),
            subscription_events::detail.eq(detail),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

async fn live_addons(
    conn: &mut AsyncPgConnection,
    parent: Uuid,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    subscriptions::table
        .filter(subscriptions::parent_id.eq(parent))
        .filter(subscriptions::status.ne(SubscriptionStatus::Ended.as_str()))
        .order(subscriptions::id)
        .select(subscriptions::id)
        .load(conn)
        .await
}

fn require_live(sub: &SubRow) -> Result<(), SubscriptionError> {
    match sub.status {
        SubscriptionStatus::Active => Ok(()),
        SubscriptionStatus::PendingPayment => Err(SubscriptionError::WrongState(
            sub.id,
            "waiting for its first payment",
        )),
        SubscriptionStatus::Ended => Err(SubscriptionError::WrongState(sub.id, "ended")),
    }
}
