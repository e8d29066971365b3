//! Subscriptions as the API shows them: one with its schedule and history, or a page.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::catalog;
use crate::schema::{subscription_events, subscriptions};

#[derive(Queryable, Selectable)]
#[diesel(table_name = subscription_events)]
struct EventRow {
    kind: EventKind,
    at: DateTime<Utc>,
    term_index: Option<i32>,
    detail: serde_json::Value,
}

async fn to_view(
    conn: &mut AsyncPgConnection,
    sub: SubRow,
    now: DateTime<Utc>,
) -> Result<SubscriptionView, SubscriptionError> {
    let events: Vec<EventRow> = subscription_events::table
        .filter(subscription_events::subscription_id.eq(sub.id))
        .order(subscription_events::id)
        .select(EventRow::as_select())
        .load(conn)
        .await?;
    let mut view = SubscriptionView {
        id: sub.id,
        customer_id: sub.customer_id,
        offer_code: sub.offer_code.clone(),
        parent_id: sub.parent_id,
        status: sub.status,
        anchor_date: sub.anchor_date,
        start_date: sub.start_date,
        cancel_received_at: sub.cancel_received_at,
        cancel_received_on: sub.cancel_received_on,
        ends_at: sub.ends_at,
        terminated_at: sub.terminated_at,
        termination_received_on: sub.termination_received_on,
        current_term: None,
        notice_deadline: None,
        next_renewal_date: None,
        early_termination_if_now: None,
        history: events
            .into_iter()
            .map(|e| SubscriptionEvent {
                kind: e.kind,
                at: e.at,
                term_index: e.term_index,
                detail: e.detail,
            })
            .collect(),
        created_at: sub.created_at,
    };
    let ended = sub.status == SubscriptionStatus::Ended || sub.ends_at.is_some_and(|e| e <= now);
    if ended {
        return Ok(view);
    }
    if let Some((plan, offer)) = plan_of(conn, &sub).await? {
        let term = plan.term_at(now);
        view.current_term = Some(term);
        let renews = sub.ends_at.is_none_or(|e| e > paris_midnight(term.end));
        if renews {
            view.next_renewal_date = Some(term.end);
            if sub.cancel_received_at.is_none() {
                view.notice_deadline = Some(plan.notice_deadline(term));
            }
        }
        if let Some(price) = catalog::store::price_on(conn, &offer.code, paris_date(now)).await? {
            view.early_termination_if_now =
                Some(plan.early_termination(now, price, offer.early_termination_rate.0));
        }
    }
    Ok(view)
}

pub async fn view(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<SubscriptionView>, SubscriptionError> {
    match row(conn, id, false).await {
        Ok(sub) => Ok(Some(to_view(conn, sub, now).await?)),
        Err(SubscriptionError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Subscriptions in id order after `after`, optionally of one customer.
pub async fn list(
    conn: &mut AsyncPgConnection,
    customer: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<SubscriptionView>, SubscriptionError> {
    let mut q = subscriptions::table
        .select(SubRow::as_select())
        .order(subscriptions::id)
        .limit(limit)
        .into_boxed();
    if let Some(c) = customer {
        q = q.filter(subscriptions::customer_id.eq(c));
    }
    if let Some(a) = after {
        q = q.filter(subscriptions::id.gt(a));
    }
    let rows: Vec<SubRow> = q.load(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(to_view(conn, r, now).await?);
    }
    Ok(out)
}
