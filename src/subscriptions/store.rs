//! Persistence of subscriptions, and the `renewals` and `billing` jobs.

use chrono::{DateTime, Days, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::catalog::{self, Offer};
use crate::charges::{self, ChargeSource, NewCharge};
use crate::idempotency::{self, IdempotencyKey, KeyReused};
use crate::schema::{customers, mandates, subscription_events, subscriptions};

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
    status: String,
    anchor_date: Option<NaiveDate>,
    start_date: NaiveDate,
    cancel_received_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    terminated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl SubRow {
    fn status(&self) -> SubscriptionStatus {
        SubscriptionStatus::parse(&self.status).unwrap_or(SubscriptionStatus::Ended)
    }
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

/// The plan and offer of subscription `id` (none while it waits for its first payment).
pub async fn plan(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<(Plan, Offer)>, SubscriptionError> {
    let sub = row(conn, id, false).await?;
    plan_of(conn, &sub).await
}

/// Whether the customer has an active SEPA mandate (the SEPA issue adds the full model).
pub async fn has_active_mandate(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<bool, diesel::result::Error> {
    diesel::select(diesel::dsl::exists(
        mandates::table
            .filter(mandates::customer_id.eq(customer))
            .filter(mandates::status.eq("active")),
    ))
    .get_result(conn)
    .await
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

/// Creates a subscription at `now`; with a key, a replay returns the first (`true`).
pub async fn create(
    conn: &mut AsyncPgConnection,
    req: &NewSubscription,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(Uuid, bool), SubscriptionError> {
    let today = paris_date(now);
    let start = req.start_date.unwrap_or(today);
    // the request as decided: a missing start date is today's
    let request = NewSubscription {
        start_date: Some(start),
        ..req.clone()
    };
    crate::retry_transaction!(conn, SubscriptionError, |c| {
        let first = idempotency::replay::<_, SubscriptionError>(
            c,
            key,
            "subscriptions.create",
            &request,
            now,
        );
        if let Some(id) = first.await? {
            return Ok((id, true));
        }
        let status: Option<String> = customers::table
            .find(req.customer_id)
            .select(customers::status)
            .for_share()
            .first(c)
            .await
            .optional()?;
        match status.as_deref() {
            None => return Err(SubscriptionError::UnknownCustomer(req.customer_id)),
            Some("active") => {}
            Some(_) => return Err(SubscriptionError::CustomerNotActive(req.customer_id)),
        }
        let offer = offer(c, &req.offer_code).await?;
        let billing_months = offer
            .billing_period
            .months()
            .ok_or_else(|| SubscriptionError::NotRecurring(offer.code.clone()))?;
        let price_date = if offer.activation_on_payment {
            today
        } else {
            start
        };
        let price = catalog::store::price_on(c, &offer.code, price_date)
            .await?
            .ok_or_else(|| SubscriptionError::NoPrice(offer.code.clone(), price_date))?;
        if offer.sepa_required && !has_active_mandate(c, req.customer_id).await? {
            return Err(SubscriptionError::SepaMandateRequired(offer.code.clone()));
        }
        let (status, anchor, ends_at) = match (offer.addon, req.parent_id) {
            (true, None) => return Err(SubscriptionError::ParentRequired(offer.code.clone())),
            (false, Some(_)) => {
                return Err(SubscriptionError::ParentNotAllowed(offer.code.clone()))
            }
            (true, Some(parent_id)) => {
                let parent = row(c, parent_id, true)
                    .await
                    .map_err(|_| SubscriptionError::BadParent(parent_id))?;
                let live = parent.status() == SubscriptionStatus::Active
                    && parent.customer_id == req.customer_id
                    && parent.parent_id.is_none()
                    && parent.ends_at.is_none_or(|e| e > paris_midnight(start));
                let Some(anchor) = parent.anchor_date.filter(|a| live && *a <= start) else {
                    return Err(SubscriptionError::BadParent(parent_id));
                };
                let terms = self::offer(c, &parent.offer_code).await?;
                if !(terms.commitment_months as u32).is_multiple_of(billing_months)
                    || !(terms.renewal_months as u32).is_multiple_of(billing_months)
                {
                    return Err(SubscriptionError::AddonDoesNotFit(billing_months));
                }
                (SubscriptionStatus::Active, Some(anchor), parent.ends_at)
            }
            (false, None) if offer.activation_on_payment => {
                (SubscriptionStatus::PendingPayment, None, None)
            }
            (false, None) => (SubscriptionStatus::Active, Some(start), None),
        };
        let id = Uuid::now_v7();
        diesel::insert_into(subscriptions::table)
            .values((
                subscriptions::id.eq(id),
                subscriptions::customer_id.eq(req.customer_id),
                subscriptions::offer_code.eq(&offer.code),
                subscriptions::parent_id.eq(req.parent_id),
                subscriptions::status.eq(status.as_str()),
                subscriptions::anchor_date.eq(anchor),
                subscriptions::start_date.eq(start),
                subscriptions::ends_at.eq(ends_at),
                subscriptions::created_at.eq(now),
            ))
            .execute(c)
            .await?;
        record(
            c,
            id,
            EventKind::Created,
            now,
            None,
            serde_json::json!({ "offer_code": offer.code }),
        )
        .await?;
        if status == SubscriptionStatus::PendingPayment {
            // the invoice to pay: the first period, counted from the payment's value date
            charges::insert(
                c,
                &NewCharge {
                    subscription_id: Some(id),
                    period_index: Some(0),
                    ..NewCharge::of_offer(
                        req.customer_id,
                        &offer,
                        ChargeSource::SubscriptionPeriod,
                        format!(
                            "{}, first {} month(s) from the payment date",
                            offer.name, billing_months
                        ),
                        Decimal::ONE,
                        price,
                    )
                },
                now,
            )
            .await?;
        }
        idempotency::record(c, key, &id).await?;
        Ok((id, false))
    })
}

/// The first payment of a subscription that waits for it has landed with value date
/// `value_date`: its terms start that day. Idempotent for the same value date.
pub async fn activate_on_payment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    value_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    crate::retry_transaction!(conn, SubscriptionError, |c| {
        let sub = row(c, id, true).await?;
        match (sub.status(), sub.anchor_date) {
            (SubscriptionStatus::Active, Some(a)) if a == value_date => return Ok(()),
            (SubscriptionStatus::PendingPayment, _) => {}
            _ => {
                return Err(SubscriptionError::WrongState(
                    id,
                    "not waiting for its first payment",
                ))
            }
        }
        diesel::update(subscriptions::table.find(id))
            .set((
                subscriptions::status.eq(SubscriptionStatus::Active.as_str()),
                subscriptions::anchor_date.eq(value_date),
                subscriptions::start_date.eq(value_date),
            ))
            .execute(c)
            .await?;
        record(
            c,
            id,
            EventKind::Activated,
            now,
            None,
            serde_json::json!({ "value_date": value_date }),
        )
        .await?;
        Ok(())
    })
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
    match sub.status() {
        SubscriptionStatus::Active => Ok(()),
        SubscriptionStatus::PendingPayment => Err(SubscriptionError::WrongState(
            sub.id,
            "waiting for its first payment",
        )),
        SubscriptionStatus::Ended => Err(SubscriptionError::WrongState(sub.id, "ended")),
    }
}

/// A cancellation received at `now`: the subscription ends at the current term's end when
/// the notice is respected, else at the next term's end. Its add-ons end with it. Asking
/// again changes nothing.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    crate::retry_transaction!(conn, SubscriptionError, |c| {
        let sub = row(c, id, true).await?;
        require_live(&sub)?;
        if sub.cancel_received_at.is_some() {
            return Ok(());
        }
        let (plan, _) = plan_of(c, &sub)
            .await?
            .ok_or(SubscriptionError::WrongState(id, "not started"))?;
        let mut ends = paris_midnight(plan.end_after_cancellation(now));
        if let Some(e) = sub.ends_at {
            ends = ends.min(e);
        }
        diesel::update(subscriptions::table.find(id))
            .set((
                subscriptions::cancel_received_at.eq(now),
                subscriptions::ends_at.eq(ends),
            ))
            .execute(c)
            .await?;
        record(
            c,
            id,
            EventKind::CancellationReceived,
            now,
            None,
            serde_json::json!({ "ends_at": ends }),
        )
        .await?;
        for addon in live_addons(c, id).await? {
            diesel::update(subscriptions::table.find(addon))
                .filter(
                    subscriptions::ends_at
                        .is_null()
                        .or(subscriptions::ends_at.gt(ends)),
                )
                .set(subscriptions::ends_at.eq(ends))
                .execute(c)
                .await?;
        }
        Ok(())
    })
}

/// Ends a subscription at `now`, before its term's end, billing the early-termination fee;
/// its add-ons end too, each with its own fee.
pub async fn terminate(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    crate::retry_transaction!(conn, SubscriptionError, |c| {
        let sub = row(c, id, true).await?;
        require_live(&sub)?;
        if sub.ends_at.is_some_and(|e| e <= now) {
            return Err(SubscriptionError::WrongState(id, "ended"));
        }
        let mut ids = vec![id];
        ids.extend(live_addons(c, id).await?);
        for sid in ids {
            let sub = row(c, sid, true).await?;
            if let Some((plan, offer)) = plan_of(c, &sub).await? {
                let today = paris_date(now);
                let price = catalog::store::price_on(c, &offer.code, today)
                    .await?
                    .ok_or_else(|| SubscriptionError::NoPrice(offer.code.clone(), today))?;
                let fee = plan.early_termination(now, price, offer.early_termination_rate.0);
                if fee.fee.0 > Decimal::ZERO {
                    let description = format!(
                        "{}: early termination, {} remaining period(s) × {} × {}%",
                        offer.name,
                        fee.remaining_periods,
                        fee.unit_price.0,
                        (fee.rate.0 * Decimal::ONE_HUNDRED).normalize()
                    );
                    charges::insert(
                        c,
                        &NewCharge {
                            subscription_id: Some(sid),
                            ..NewCharge::of_offer(
                                sub.customer_id,
                                &offer,
                                ChargeSource::EarlyTermination,
                                description,
                                Decimal::ONE,
                                fee.fee.0,
                            )
                        },
                        now,
                    )
                    .await?;
                }
                record(
                    c,
                    sid,
                    EventKind::Terminated,
                    now,
                    None,
                    serde_json::to_value(&fee).unwrap_or_default(),
                )
                .await?;
            }
            diesel::update(subscriptions::table.find(sid))
                .set((
                    subscriptions::status.eq(SubscriptionStatus::Ended.as_str()),
                    subscriptions::ends_at.eq(now),
                    subscriptions::terminated_at.eq(now),
                ))
                .execute(c)
                .await?;
            record(c, sid, EventKind::Ended, now, None, serde_json::json!({})).await?;
        }
        Ok(())
    })
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = subscription_events)]
struct EventRow {
    kind: String,
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
        status: sub.status(),
        anchor_date: sub.anchor_date,
        start_date: sub.start_date,
        cancel_received_at: sub.cancel_received_at,
        ends_at: sub.ends_at,
        terminated_at: sub.terminated_at,
        current_term: None,
        notice_deadline: None,
        next_renewal_date: None,
        early_termination_if_now: None,
        history: events
            .into_iter()
            .filter_map(|e| {
                Some(SubscriptionEvent {
                    kind: EventKind::parse(&e.kind)?,
                    at: e.at,
                    term_index: e.term_index,
                    detail: e.detail,
                })
            })
            .collect(),
        created_at: sub.created_at,
    };
    let ended = sub.status() == SubscriptionStatus::Ended || sub.ends_at.is_some_and(|e| e <= now);
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

/// What a job run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct JobReport {
    /// Subscriptions that renewed (one per term that began).
    pub renewed: u32,
    /// Subscriptions that reached their end.
    pub ended: u32,
    /// Charges created.
    pub charges_created: u32,
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
) -> Result<JobReport, SubscriptionError> {
    let mut report = JobReport::default();
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
) -> Result<JobReport, SubscriptionError> {
    let mut report = JobReport::default();
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
            report.charges_created += u32::from(inserted);
        }
    }
    Ok(report)
}
