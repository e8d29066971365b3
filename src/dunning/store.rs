//! Dunning in the database: the `dunning` job, the lifting of a suspension once nothing is
//! overdue, what a customer's standing shows, and the liability cap. Each customer is
//! handled in its own transaction, its row locked first.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    assistance_part, cap_window, DunningView, LiabilityCap, NoticeStatus, NoticeView, Policy,
};
use crate::calendar::paris_date;
use crate::charges::ChargeSource;
use crate::customers::CustomerStatus;
use crate::invoicing::store_settlements::{open_invoices, OpenInvoice};
use crate::invoicing::{InvoiceStatus, SettlementKind};
use crate::jobs::Failure;
use crate::money::{DecimalString, Unit};
use crate::schema::{
    charges, customers, formal_notices, invoice_lines, invoice_settlements, invoices, offers,
    subscriptions,
};
use crate::subscriptions::store as subscriptions_store;
use crate::subscriptions::{SubscriptionError, SubscriptionStatus};

#[derive(Debug, thiserror::Error)]
pub enum DunningError {
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl crate::db::Retryable for DunningError {
    fn is_retryable(&self) -> bool {
        match self {
            DunningError::Database(e) => crate::db::is_retryable(e),
            DunningError::Subscription(SubscriptionError::Database(e)) => {
                crate::db::is_retryable(e)
            }
            _ => false,
        }
    }
}

/// What a `dunning` run did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct DunningReport {
    /// Invoices that passed their due date unpaid.
    pub invoices_overdue: u32,
    /// Formal notices sent (each suspends its customer).
    pub notices_sent: u32,
    /// Notices cleared because nothing is overdue any more (suspension lifted).
    pub notices_cleared: u32,
    /// Notices left without effect: the customer's contracts were terminated.
    pub notices_enforced: u32,
    pub subscriptions_terminated: u32,
    /// Customers that could not be processed (the next run takes them up again).
    pub failed: Vec<Failure>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = formal_notices)]
struct NoticeRow {
    id: Uuid,
    sent_on: NaiveDate,
    amount: Decimal,
    status: NoticeStatus,
    closed_on: Option<NaiveDate>,
}

impl From<NoticeRow> for NoticeView {
    fn from(r: NoticeRow) -> Self {
        NoticeView {
            id: r.id,
            sent_on: r.sent_on,
            amount: DecimalString(r.amount),
            status: r.status,
            closed_on: r.closed_on,
        }
    }
}

fn overdue(open: &[OpenInvoice]) -> impl Iterator<Item = &OpenInvoice> {
    open.iter().filter(|i| i.status == InvoiceStatus::Overdue)
}

async fn open_notice(
    c: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<Option<NoticeRow>, diesel::result::Error> {
    formal_notices::table
        .filter(formal_notices::customer_id.eq(customer))
        .filter(formal_notices::status.eq(NoticeStatus::Open.as_str()))
        .select(NoticeRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

async fn close_notice(
    c: &mut AsyncPgConnection,
    id: Uuid,
    status: NoticeStatus,
    on: NaiveDate,
) -> Result<(), diesel::result::Error> {
    diesel::update(formal_notices::table.find(id))
        .set((
            formal_notices::status.eq(status.as_str()),
            formal_notices::closed_on.eq(on),
        ))
        .execute(c)
        .await?;
    Ok(())
}

async fn set_status(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    status: CustomerStatus,
    now: DateTime<Utc>,
) -> Result<(), diesel::result::Error> {
    diesel::update(customers::table.find(customer))
        .set((
            customers::status.eq(status.as_str()),
            customers::updated_at.eq(now),
        ))
        .execute(c)
        .await?;
    Ok(())
}

/// Inside the caller's transaction, which has locked the customer's row: when the customer
/// has an open notice and nothing is overdue any more, the notice is cleared on `on` and a
/// suspended account reinstated. A suspension without a notice (set by hand) stays.
/// Returns whether a notice was cleared.
pub async fn lift_if_cleared_in_tx(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    on: NaiveDate,
    now: DateTime<Utc>,
) -> Result<bool, diesel::result::Error> {
    let Some(notice) = open_notice(c, customer).await? else {
        return Ok(false);
    };
    let open = open_invoices(c, customer).await?;
    clear_if_nothing_overdue(c, customer, &notice, &open, on, now).await
}

/// Clears the open `notice` on `on` and reinstates a suspended customer when none of its
/// `open` invoices is overdue any more; whether it did.
async fn clear_if_nothing_overdue(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    notice: &NoticeRow,
    open: &[OpenInvoice],
    on: NaiveDate,
    now: DateTime<Utc>,
) -> Result<bool, diesel::result::Error> {
    if overdue(open).any(|i| i.due > Decimal::ZERO) {
        return Ok(false);
    }
    close_notice(c, notice.id, NoticeStatus::Cleared, on.max(notice.sent_on)).await?;
    let status: CustomerStatus = customers::table
        .find(customer)
        .select(customers::status)
        .first(c)
        .await?;
    if status == CustomerStatus::Suspended {
        set_status(c, customer, CustomerStatus::Active, now).await?;
    }
    Ok(true)
}

/// What one customer's step of the run did.
#[derive(Default)]
struct Step {
    sent: bool,
    cleared: bool,
    enforced: bool,
    terminated: u32,
}

async fn step(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    policy: Policy,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Step, DunningError> {
    let today = paris_date(as_of);
    let status: CustomerStatus = customers::table
        .find(customer)
        .select(customers::status)
        .for_no_key_update()
        .first(c)
        .await
        .optional()?
        .ok_or(DunningError::UnknownCustomer(customer))?;
    let mut done = Step::default();
    if status == CustomerStatus::Closed {
        return Ok(done);
    }
    let open = open_invoices(c, customer).await?;
    let notice = open_notice(c, customer).await?;
    if let Some(notice) = &notice {
        if clear_if_nothing_overdue(c, customer, notice, &open, today, now).await? {
            done.cleared = true;
            return Ok(done);
        }
    }
    let owed: Decimal = overdue(&open).map(|i| i.due).sum();
    let Some(oldest) = overdue(&open).map(|i| i.due_on).min() else {
        return Ok(done);
    };
    // a notice already enforced for these invoices is not sent again
    let enforced: i64 = formal_notices::table
        .filter(formal_notices::customer_id.eq(customer))
        .filter(formal_notices::status.eq(NoticeStatus::Enforced.as_str()))
        .filter(formal_notices::sent_on.ge(oldest))
        .count()
        .get_result(c)
        .await?;
    match notice {
        None if enforced == 0 && policy.notice_due(oldest, today) => {
            diesel::insert_into(formal_notices::table)
                .values((
                    formal_notices::id.eq(Uuid::now_v7()),
                    formal_notices::customer_id.eq(customer),
                    formal_notices::sent_on.eq(today),
                    formal_notices::amount.eq(owed),
                    formal_notices::status.eq(NoticeStatus::Open.as_str()),
                    formal_notices::created_at.eq(now),
                ))
                .execute(c)
                .await?;
            if status == CustomerStatus::Active {
                set_status(c, customer, CustomerStatus::Suspended, now).await?;
            }
            done.sent = true;
        }
        Some(notice) if policy.termination_due(notice.sent_on, today) => {
            let live: Vec<Uuid> = subscriptions::table
                .filter(subscriptions::customer_id.eq(customer))
                .filter(subscriptions::parent_id.is_null())
                .filter(subscriptions::status.eq(SubscriptionStatus::Active.as_str()))
                .filter(
                    subscriptions::ends_at
                        .is_null()
                        .or(subscriptions::ends_at.gt(as_of)),
                )
                .order(subscriptions::id)
                .select(subscriptions::id)
                .load(c)
                .await?;
            for id in live {
                subscriptions_store::terminate(c, id, None, as_of).await?;
                done.terminated += 1;
            }
            close_notice(c, notice.id, NoticeStatus::Enforced, today).await?;
            done.enforced = true;
        }
        _ => {}
    }
    Ok(done)
}

/// The `dunning` job for `as_of` (its Paris date is "today"): invoices past due become
/// overdue; a customer whose oldest overdue invoice is 15 days past due gets a formal
/// notice and is suspended; a notice open for 30 days terminates the customer's contracts
/// (with their early-termination fees); a notice whose customer owes nothing overdue any
/// more is cleared and the suspension lifted. Idempotent for the same `as_of`.
pub async fn run(
    conn: &mut AsyncPgConnection,
    policy: Policy,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DunningReport, DunningError> {
    let today = paris_date(as_of);
    let mut report = DunningReport::default();
    let passed = diesel::update(
        invoices::table
            .filter(invoices::status.eq(InvoiceStatus::Issued.as_str()))
            .filter(invoices::due_on.lt(today)),
    )
    .set(invoices::status.eq(InvoiceStatus::Overdue.as_str()))
    .execute(conn)
    .await?;
    report.invoices_overdue = passed as u32;
    let mut concerned: Vec<Uuid> = invoices::table
        .filter(invoices::status.eq(InvoiceStatus::Overdue.as_str()))
        .select(invoices::customer_id)
        .distinct()
        .load(conn)
        .await?;
    concerned.extend(
        formal_notices::table
            .filter(formal_notices::status.eq(NoticeStatus::Open.as_str()))
            .select(formal_notices::customer_id)
            .load::<Uuid>(conn)
            .await?,
    );
    concerned.sort();
    concerned.dedup();
    for customer in concerned {
        let done = crate::retry_transaction!(conn, DunningError, |c| {
            step(c, customer, policy, as_of, now).await
        });
        match done {
            Ok(done) => {
                report.notices_sent += u32::from(done.sent);
                report.notices_cleared += u32::from(done.cleared);
                report.notices_enforced += u32::from(done.enforced);
                report.subscriptions_terminated += done.terminated;
            }
            Err(e) => {
                tracing::warn!(%customer, error = %e, "dunning: customer not processed");
                report.failed.push(Failure {
                    id: customer,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(report)
}

/// The customer's standing: what its overdue invoices ask and its latest notice.
pub async fn view(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<DunningView, diesel::result::Error> {
    let open = open_invoices(conn, customer).await?;
    let notice: Option<NoticeRow> = formal_notices::table
        .filter(formal_notices::customer_id.eq(customer))
        .order((formal_notices::sent_on.desc(), formal_notices::id.desc()))
        .select(NoticeRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(DunningView {
        overdue_amount: Unit::Eur.show(overdue(&open).map(|i| i.due).sum()),
        overdue_since: overdue(&open).map(|i| i.due_on).min(),
        notice: notice.map(NoticeView::from),
    })
}

/// Whether a charge is an assistance fee: tickets, chargeable interventions, Assistance+
/// overage, and the periods of offers that give assistance (Support VIP, Premium
/// assistance, Assistance+ and Service+ packs).
fn is_assistance(source: ChargeSource, offer_gives_assistance: bool) -> bool {
    match source {
        ChargeSource::TicketPurchase
        | ChargeSource::Intervention
        | ChargeSource::AssistanceOverage => true,
        ChargeSource::SubscriptionPeriod => offer_gives_assistance,
        ChargeSource::EarlyTermination | ChargeSource::OneOff | ChargeSource::CreditPurchase => {
            false
        }
    }
}

/// The assistance fees the customer paid over the 12 months before `on` (DOMAIN.md,
/// seed 001's liability cap): each payment (or credit balance applied) with a value date
/// in the window counts for the share of its invoice that is assistance, in proportion to
/// the invoice's amounts incl. VAT, to the cent.
pub async fn liability_cap(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    on: NaiveDate,
) -> Result<LiabilityCap, DunningError> {
    let (from, to) = cap_window(on).ok_or(DunningError::UnknownCustomer(customer))?;
    // a payment that came back by then (a returned SEPA collection) was never paid
    let (settlement, returned) = diesel::alias!(
        invoice_settlements as settlement,
        invoice_settlements as returned
    );
    let came_back = returned
        .filter(
            returned
                .field(invoice_settlements::kind)
                .eq(SettlementKind::PaymentReturn.as_str()),
        )
        .filter(
            returned
                .field(invoice_settlements::source_id)
                .eq(settlement.field(invoice_settlements::source_id)),
        )
        .filter(
            returned
                .field(invoice_settlements::invoice_id)
                .eq(settlement.field(invoice_settlements::invoice_id)),
        )
        .filter(returned.field(invoice_settlements::settled_on).le(to));
    let paid: Vec<(Uuid, Decimal)> = settlement
        .filter(
            settlement
                .field(invoice_settlements::customer_id)
                .eq(customer),
        )
        .filter(settlement.field(invoice_settlements::kind).eq_any([
            SettlementKind::Payment.as_str(),
            SettlementKind::CreditBalance.as_str(),
        ]))
        .filter(settlement.field(invoice_settlements::settled_on).gt(from))
        .filter(settlement.field(invoice_settlements::settled_on).le(to))
        .filter(diesel::dsl::not(diesel::dsl::exists(came_back)))
        .select((
            settlement.field(invoice_settlements::invoice_id),
            settlement.field(invoice_settlements::amount),
        ))
        .load(conn)
        .await?;
    let ids: Vec<Uuid> = paid.iter().map(|(i, _)| *i).collect();
    let totals: HashMap<Uuid, Decimal> = invoices::table
        .filter(invoices::id.eq_any(&ids))
        .select((invoices::id, invoices::total_ttc))
        .load::<(Uuid, Decimal)>(conn)
        .await?
        .into_iter()
        .collect();
    let lines: Vec<(
        Uuid,
        Decimal,
        Decimal,
        ChargeSource,
        Option<OfferAssistance>,
    )> = invoice_lines::table
        .inner_join(charges::table)
        .left_join(offers::table.on(charges::offer_code.eq(offers::code.nullable())))
        .filter(invoice_lines::invoice_id.eq_any(&ids))
        .select((
            invoice_lines::invoice_id,
            invoice_lines::net_ht,
            invoice_lines::vat_rate,
            charges::source,
            (
                offers::free_diagnostics,
                offers::assistance_included,
                offers::appointment_quota,
                offers::credits_per_term,
            )
                .nullable(),
        ))
        .load(conn)
        .await?;
    let mut assistance: HashMap<Uuid, Decimal> = HashMap::new();
    for (invoice, net, rate, source, offer) in lines {
        let gives = offer.is_some_and(|(free, included, quota, credits)| {
            free || included || quota.is_some() || credits.is_some()
        });
        if is_assistance(source, gives) {
            *assistance.entry(invoice).or_default() += net * (Decimal::ONE + rate);
        }
    }
    let mut amount = Decimal::ZERO;
    let mut payments = 0;
    for (invoice, part) in paid {
        let total = totals.get(&invoice).copied().unwrap_or_default();
        let share = assistance_part(
            part,
            total,
            assistance.get(&invoice).copied().unwrap_or_default(),
        );
        if share > Decimal::ZERO {
            amount += share;
            payments += 1;
        }
    }
    Ok(LiabilityCap {
        customer_id: customer,
        from,
        to,
        amount: Unit::Eur.show(amount),
        payments,
    })
}

type OfferAssistance = (bool, bool, Option<i32>, Option<Decimal>);
