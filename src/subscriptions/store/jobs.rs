//! The `renewals` and `billing` jobs.

use chrono::{DateTime, Days, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::paris_midnight;
use crate::catalog;
use crate::charges::{self, ChargeSource, NewCharge};
use crate::schema::{subscription_events, subscriptions};

fn period_text(name: &str, charge: &schedule::PeriodCharge) -> String {
    let end = charge.period.end;
    let last = end.checked_sub_days(Days::new(1)).unwrap_or(end);
    let text = format!("{name}, {} to {last}", charge.from);
    if charge.is_prorated() {
        format!(
            "{text} ({} of {} days)",
            charge.days_billed, charge.days_in_period
        )
    } else {
        text
    }
}

/// What a `renewals` run did to subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Renewed {
    /// Subscriptions that renewed (one per term that began).
    pub renewed: u32,
    /// Subscriptions that reached their end.
    pub ended: u32,
}

async fn started_subscriptions(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<SubRow>, diesel::result::Error> {
    subscriptions::table
        .filter(subscriptions::anchor_date.is_not_null())
        .order(subscriptions::id)
        .select(SubRow::as_select())
        .load(conn)
        .await
}

/// `renewals` at `as_of`: ends the subscriptions whose end has come, and records each
/// tacit renewal (a term that began) once. Idempotent.
pub async fn run_renewals(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<Renewed, SubscriptionError> {
    let mut report = Renewed::default();
    let ended: Vec<(Uuid, Option<DateTime<Utc>>)> = diesel::update(
        subscriptions::table
            .filter(subscriptions::status.eq(SubscriptionStatus::Active.as_str()))
            .filter(subscriptions::ends_at.le(as_of)),
    )
    .set(subscriptions::status.eq(SubscriptionStatus::Ended.as_str()))
    .returning((subscriptions::id, subscriptions::ends_at))
    .get_results(conn)
    .await?;
    for (id, at) in ended {
        if record(
            conn,
            id,
            EventKind::Ended,
            at.unwrap_or(as_of),
            None,
            serde_json::json!({}),
        )
        .await?
        {
            report.ended += 1;
        }
    }
    for sub in started_subscriptions(conn).await? {
        let Some((plan, _)) = plan_of(conn, &sub).await? else {
            continue;
        };
        let until = schedule::alive_until(sub.ends_at, as_of);
        if until < paris_midnight(plan.anchor) {
            continue;
        }
        let last: Option<i32> = subscription_events::table
            .filter(subscription_events::subscription_id.eq(sub.id))
            .filter(subscription_events::kind.eq(EventKind::Renewed.as_str()))
            .select(diesel::dsl::max(subscription_events::term_index))
            .first(conn)
            .await?;
        let from = last.map_or(1, |l| l as u32 + 1);
        for k in from..=plan.term_at(until).index {
            let term = plan.term(k);
            let detail = serde_json::json!({ "term_start": term.start, "term_end": term.end });
            if record(
                conn,
                sub.id,
                EventKind::Renewed,
                paris_midnight(term.start),
                Some(k as i32),
                detail,
            )
            .await?
            {
                report.renewed += 1;
            }
        }
    }
    Ok(report)
}

/// `billing` at `as_of`: a charge for every billing period that has started by then and
/// before the subscription's end, at the price in force on the period's first billed day
/// (billing in advance). An add-on taken inside a period pays it from its start date,
/// prorated by days ([`Plan::charge`]). Idempotent; a late run catches up every period in
/// between.
pub async fn run_billing(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u32, SubscriptionError> {
    let mut charges_created = 0;
    for sub in started_subscriptions(conn).await? {
        let Some((plan, offer)) = plan_of(conn, &sub).await? else {
            continue;
        };
        let charged = charges::charged_periods(conn, sub.id).await?;
        let due: Vec<Period> = plan
            .periods_due(as_of, sub.ends_at)
            .filter(|p| !charged.contains(&(p.index as i32)))
            .collect();
        for p in due {
            let from = plan.billed_from(p);
            let Some(price) = catalog::store::price_on(conn, &offer.code, from).await? else {
                tracing::warn!(subscription = %sub.id, offer = %offer.code, date = %from, "no price in force: period not charged");
                continue;
            };
            let charge = plan.charge(p, price);
            let inserted = charges::insert(
                conn,
                &NewCharge {
                    subscription_id: Some(sub.id),
                    period_index: Some(p.index as i32),
                    service_start: Some(charge.from),
                    service_end: Some(p.end),
                    ..NewCharge::of_offer(
                        sub.customer_id,
                        &offer,
                        ChargeSource::SubscriptionPeriod,
                        period_text(&offer.name, &charge),
                        Decimal::ONE,
                        charge.amount,
                    )
                },
                now,
            )
            .await?;
            charges_created += u32::from(inserted);
        }
    }
    Ok(charges_created)
}
