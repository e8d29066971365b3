//! Charges: billable items not yet invoiced. Jobs and domain operations create them;
//! invoicing turns them into invoice lines.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::PriceBasis;
use crate::money::{round_cents, DecimalString};
use crate::schema::charges;

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ChargeSource {
        SubscriptionPeriod = "subscription_period",
        EarlyTermination = "early_termination",
        OneOff = "one_off",
        TicketPurchase = "ticket_purchase",
        CreditPurchase = "credit_purchase",
        AssistanceOverage = "assistance_overage",
        Intervention = "intervention",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCharge {
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub offer_code: Option<String>,
    pub source: ChargeSource,
    pub period_index: Option<i32>,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub price_basis: PriceBasis,
    pub vat_rate: Decimal,
    pub service_start: Option<NaiveDate>,
    pub service_end: Option<NaiveDate>,
    pub idempotency_key: Option<String>,
}

impl NewCharge {
    /// A charge of `quantity × unit_price` of `offer`, with its price basis and VAT rate;
    /// no subscription, period, service dates or key until set.
    pub fn of_offer(
        customer_id: Uuid,
        offer: &crate::catalog::Offer,
        source: ChargeSource,
        description: String,
        quantity: Decimal,
        unit_price: Decimal,
    ) -> Self {
        NewCharge {
            customer_id,
            subscription_id: None,
            offer_code: Some(offer.code.clone()),
            source,
            period_index: None,
            description,
            quantity,
            unit_price,
            price_basis: offer.price_basis,
            vat_rate: offer.vat_rate.0,
            service_start: None,
            service_end: None,
            idempotency_key: None,
        }
    }
}

/// A charge as the API shows it. `amount` is `quantity × unit_price` rounded to the cent,
/// excluding or including VAT as `price_basis` says.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChargeView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub subscription_id: Option<Uuid>,
    pub offer_code: Option<String>,
    pub source: ChargeSource,
    pub period_index: Option<i32>,
    pub description: String,
    pub quantity: DecimalString,
    pub unit_price: DecimalString,
    pub amount: DecimalString,
    pub price_basis: PriceBasis,
    pub vat_rate: DecimalString,
    /// The first day of the service the charge bills.
    pub service_start: Option<NaiveDate>,
    /// The day after its last (an exclusive end: a month from 2026-01-31 ends on
    /// 2026-02-28, its description saying "to 2026-02-27").
    pub service_end: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    /// Set once invoiced.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub invoice_id: Option<Uuid>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = charges)]
struct ChargeRow {
    id: Uuid,
    customer_id: Uuid,
    subscription_id: Option<Uuid>,
    offer_code: Option<String>,
    source: ChargeSource,
    period_index: Option<i32>,
    description: String,
    quantity: Decimal,
    unit_price: Decimal,
    price_basis: PriceBasis,
    vat_rate: Decimal,
    service_start: Option<NaiveDate>,
    service_end: Option<NaiveDate>,
    created_at: DateTime<Utc>,
    invoice_id: Option<Uuid>,
}

impl From<ChargeRow> for ChargeView {
    fn from(r: ChargeRow) -> Self {
        ChargeView {
            id: r.id,
            customer_id: r.customer_id,
            subscription_id: r.subscription_id,
            offer_code: r.offer_code,
            source: r.source,
            period_index: r.period_index,
            description: r.description,
            quantity: DecimalString(r.quantity.normalize()),
            unit_price: crate::money::price(r.unit_price),
            amount: DecimalString(round_cents(r.quantity * r.unit_price)),
            price_basis: r.price_basis,
            vat_rate: DecimalString(r.vat_rate.normalize()),
            service_start: r.service_start,
            service_end: r.service_end,
            created_at: r.created_at,
            invoice_id: r.invoice_id,
        }
    }
}

/// Inserts the charge unless the same one exists (same subscription period or fee, or
/// same idempotency key); returns whether it was inserted.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    c: &NewCharge,
    now: DateTime<Utc>,
) -> Result<bool, diesel::result::Error> {
    insert_as(conn, Uuid::now_v7(), c, now).await
}

/// [`insert`] under the id `id` (a purchase invoicing its charge at once names it).
pub async fn insert_as(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    c: &NewCharge,
    now: DateTime<Utc>,
) -> Result<bool, diesel::result::Error> {
    let n = diesel::insert_into(charges::table)
        .values((
            charges::id.eq(id),
            charges::customer_id.eq(c.customer_id),
            charges::subscription_id.eq(c.subscription_id),
            charges::offer_code.eq(&c.offer_code),
            charges::source.eq(c.source.as_str()),
            charges::period_index.eq(c.period_index),
            charges::description.eq(&c.description),
            charges::quantity.eq(c.quantity),
            charges::unit_price.eq(c.unit_price),
            charges::price_basis.eq(c.price_basis.as_str()),
            charges::vat_rate.eq(c.vat_rate),
            charges::service_start.eq(c.service_start),
            charges::service_end.eq(c.service_end),
            charges::idempotency_key.eq(&c.idempotency_key),
            charges::created_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// A customer's charges, oldest first, after the charge `after`.
pub async fn for_customer(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ChargeView>, diesel::result::Error> {
    let mut q = charges::table
        .filter(charges::customer_id.eq(customer))
        .order(charges::id)
        .limit(limit)
        .select(ChargeRow::as_select())
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(charges::id.gt(a));
    }
    Ok(q.load(conn)
        .await?
        .into_iter()
        .map(ChargeView::from)
        .collect())
}

/// A subscription's charges in period order.
pub async fn for_subscription(
    conn: &mut AsyncPgConnection,
    subscription: Uuid,
) -> Result<Vec<ChargeView>, diesel::result::Error> {
    let rows: Vec<ChargeRow> = charges::table
        .filter(charges::subscription_id.eq(subscription))
        .order((charges::period_index.asc().nulls_last(), charges::id))
        .select(ChargeRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(ChargeView::from).collect())
}

/// The period indexes of a subscription already charged.
pub async fn charged_periods(
    conn: &mut AsyncPgConnection,
    subscription: Uuid,
) -> Result<Vec<i32>, diesel::result::Error> {
    charges::table
        .filter(charges::subscription_id.eq(subscription))
        .filter(charges::source.eq(ChargeSource::SubscriptionPeriod.as_str()))
        .filter(charges::period_index.is_not_null())
        .select(charges::period_index.assume_not_null())
        .load(conn)
        .await
}
