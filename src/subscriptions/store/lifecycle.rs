//! Creating a subscription, its activation on payment, cancellation and early termination.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::catalog;
use crate::charges::{self, ChargeSource, NewCharge};
use crate::customers::{self, CustomerStatus};
use crate::idempotency::{self, IdempotencyKey};
use crate::schema::subscriptions;
use crate::subscriptions::schedule::check_received_on;

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
        if open_customer(c, req.customer_id).await? != CustomerStatus::Active {
            return Err(SubscriptionError::CustomerNotActive(req.customer_id));
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
        if offer.sepa_required
            && !crate::sepa::store::has_active_mandate(c, req.customer_id, today).await?
        {
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
                let live = parent.status == SubscriptionStatus::Active
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
/// `value_date`: its terms start that day, inside the caller's transaction (the payment's,
/// which locked the customer's row first). Its first charge (period 0) stands for the
/// first period, so billing goes on from period 1, anchored on that day. Idempotent for
/// the same value date.
pub async fn activate_on_payment_in_tx(
    c: &mut AsyncPgConnection,
    id: Uuid,
    value_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    let sub = row(c, id, true).await?;
    match (sub.status, sub.anchor_date) {
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
}

/// The subscriptions that wait for their first payment to start (Support VIP) and that the
/// payment of `invoice`, which lists their first charge, activated.
pub async fn activated_by_payment_of(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    use crate::schema::{charges, offers};
    subscriptions::table
        .inner_join(charges::table.on(charges::subscription_id.eq(subscriptions::id.nullable())))
        .inner_join(offers::table.on(offers::code.eq(subscriptions::offer_code)))
        .filter(charges::invoice_id.eq(invoice))
        .filter(charges::period_index.eq(0))
        .filter(offers::activation_on_payment)
        .filter(subscriptions::status.eq(SubscriptionStatus::Active.as_str()))
        .order(subscriptions::id)
        .select(subscriptions::id)
        .load(c)
        .await
}

/// The first payment of subscription `id` came back (a returned SEPA collection), inside
/// the caller's transaction (which locked the customer's row first): it waits for its first
/// payment again, as if never paid, and its next payment starts it anew. Unless it has gone
/// on since (a later period charged, an add-on taken, an end set): then it stays active and
/// its unpaid invoice is dunning's. Whether it was reversed.
pub async fn reverse_activation_in_tx(
    c: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, SubscriptionError> {
    use crate::schema::charges;
    let sub = row(c, id, true).await?;
    if sub.status != SubscriptionStatus::Active || sub.ends_at.is_some() {
        return Ok(false);
    }
    let later_period = charges::table
        .filter(charges::subscription_id.eq(id))
        .filter(charges::period_index.ge(1));
    let addon = subscriptions::table.filter(subscriptions::parent_id.eq(id));
    let (went_on, has_addon): (bool, bool) = diesel::select((
        diesel::dsl::exists(later_period),
        diesel::dsl::exists(addon),
    ))
    .get_result(c)
    .await?;
    if went_on || has_addon {
        return Ok(false);
    }
    diesel::update(subscriptions::table.find(id))
        .set((
            subscriptions::status.eq(SubscriptionStatus::PendingPayment.as_str()),
            subscriptions::anchor_date.eq(None::<NaiveDate>),
        ))
        .execute(c)
        .await?;
    record(
        c,
        id,
        EventKind::ActivationReversed,
        now,
        None,
        serde_json::json!({ "value_date": sub.anchor_date }),
    )
    .await?;
    Ok(true)
}

/// The subscriptions waiting for their first payment whose first charge `invoice` lists.
pub async fn pending_first_charged_on(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    use crate::schema::charges;
    subscriptions::table
        .inner_join(charges::table.on(charges::subscription_id.eq(subscriptions::id.nullable())))
        .filter(charges::invoice_id.eq(invoice))
        .filter(charges::period_index.eq(0))
        .filter(subscriptions::status.eq(SubscriptionStatus::PendingPayment.as_str()))
        .order(subscriptions::id)
        .select(subscriptions::id)
        .load(c)
        .await
}

/// The status of `customer`, refused when it does not exist or is closed; its row stays
/// share-locked to the end of the transaction, so that it is not closed meanwhile.
async fn open_customer(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<CustomerStatus, SubscriptionError> {
    match customers::store::status_for_write(conn, customer).await? {
        None => Err(SubscriptionError::UnknownCustomer(customer)),
        Some(CustomerStatus::Closed) => Err(SubscriptionError::CustomerClosed(customer)),
        Some(status) => Ok(status),
    }
}

/// The subscription `id` locked for a change on behalf of its customer, which must not be
/// closed: the customer's row first, then the subscription's (the lock order).
async fn locked_for_change(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<SubRow, SubscriptionError> {
    let customer = row(conn, id, false).await?.customer_id;
    open_customer(conn, customer).await?;
    row(conn, id, true).await
}

/// A cancellation recorded at `now`, its notice received on `received_on` (default: that
/// day, Paris): the subscription ends at the end of the term holding that day when the
/// notice met its deadline, else at the next term's end. Its add-ons end with it. Asking
/// again changes nothing.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    received_on: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    let today = paris_date(now);
    let received_on = received_on.unwrap_or(today);
    crate::retry_transaction!(conn, SubscriptionError, |c| {
        let sub = locked_for_change(c, id).await?;
        require_live(&sub)?;
        check_received_on(received_on, sub.start_date, today)
            .map_err(SubscriptionError::ReceivedOn)?;
        if sub.cancel_received_at.is_some() {
            return Ok(());
        }
        let (plan, _) = plan_of(c, &sub)
            .await?
            .ok_or(SubscriptionError::WrongState(id, "not started"))?;
        let end = plan.end_after_cancellation(received_on);
        if paris_midnight(end) <= now {
            // the subscription renewed meanwhile, and its charges stand: ending it in the
            // past would leave them billed for days it no longer runs
            return Err(SubscriptionError::ReceivedOn(format!(
                "a notice received on {received_on} ended the subscription on {end}, which has \
                 passed: it can no longer be recorded as a cancellation"
            )));
        }
        let mut ends = paris_midnight(end);
        if let Some(e) = sub.ends_at {
            ends = ends.min(e);
        }
        diesel::update(subscriptions::table.find(id))
            .set((
                subscriptions::cancel_received_at.eq(now),
                subscriptions::cancel_received_on.eq(received_on),
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
            serde_json::json!({ "ends_at": ends, "received_on": received_on }),
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
/// its add-ons end too, each with its own fee. Records the day the customer's notice was
/// received, `received_on` (default: today, Paris).
pub async fn terminate(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    received_on: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    let today = paris_date(now);
    let received_on = received_on.unwrap_or(today);
    crate::retry_transaction!(conn, SubscriptionError, |c| {
        let sub = locked_for_change(c, id).await?;
        require_live(&sub)?;
        if sub.ends_at.is_some_and(|e| e <= now) {
            return Err(SubscriptionError::WrongState(id, "ended"));
        }
        check_received_on(received_on, sub.start_date, today)
            .map_err(SubscriptionError::ReceivedOn)?;
        let mut ids = vec![id];
        ids.extend(live_addons(c, id).await?);
        for sid in ids {
            let sub = row(c, sid, true).await?;
            if let Some((plan, offer)) = plan_of(c, &sub).await? {
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
                let mut detail = serde_json::to_value(&fee).unwrap_or_default();
                detail["received_on"] = serde_json::json!(received_on);
                record(c, sid, EventKind::Terminated, now, None, detail).await?;
            }
            diesel::update(subscriptions::table.find(sid))
                .set((
                    subscriptions::status.eq(SubscriptionStatus::Ended.as_str()),
                    subscriptions::ends_at.eq(now),
                    subscriptions::terminated_at.eq(now),
                    subscriptions::termination_received_on.eq(received_on),
                ))
                .execute(c)
                .await?;
            record(c, sid, EventKind::Ended, now, None, serde_json::json!({})).await?;
        }
        Ok(())
    })
}
