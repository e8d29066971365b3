//! What settles an invoice, in the database: payments, credit notes and the customer's
//! credit balance each record a settlement against it (`invoice_settlements`); what an
//! invoice still asks, and its status, follow from them.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{settled_status, InvoiceStatus, InvoicingError, SettlementKind};
use crate::schema::{invoice_settlements, invoices};

/// An amount that settles (part of) an invoice.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub invoice_id: Uuid,
    pub kind: SettlementKind,
    /// The payment or the credit note; for the credit balance, its ledger transaction.
    pub source_id: Uuid,
    pub amount: Decimal,
    /// The payment's value date, or the day the credit was applied.
    pub settled_on: NaiveDate,
}

/// An invoice after a settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub customer_id: Uuid,
    /// What it still asks.
    pub due: Decimal,
    pub status: InvoiceStatus,
}

/// An invoice with something still due.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenInvoice {
    pub id: Uuid,
    pub number: String,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub status: InvoiceStatus,
    pub due: Decimal,
}

/// Paid (payments and credit balance) and credited (credit notes) of each invoice.
pub(crate) async fn settled_amounts(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (Decimal, Decimal)>, diesel::result::Error> {
    let rows: Vec<(Uuid, SettlementKind, Decimal)> = invoice_settlements::table
        .filter(invoice_settlements::invoice_id.eq_any(ids))
        .select((
            invoice_settlements::invoice_id,
            invoice_settlements::kind,
            invoice_settlements::amount,
        ))
        .load(conn)
        .await?;
    let mut of: HashMap<Uuid, (Decimal, Decimal)> = HashMap::new();
    for (id, kind, amount) in rows {
        let entry = of.entry(id).or_default();
        match kind {
            SettlementKind::CreditNote => entry.1 += amount,
            SettlementKind::Payment | SettlementKind::CreditBalance => entry.0 += amount,
            SettlementKind::PaymentReturn => entry.0 -= amount,
        }
    }
    Ok(of)
}

/// Records `s` inside the caller's transaction: the invoice's row is locked, an amount
/// beyond what it still asks is refused, and its status follows (`paid` or `credited`
/// when nothing remains). Posts nothing: the caller's ledger transaction carries the money
/// (bank 512, credit balance 4191 or the credit note's reversal / receivable 411).
pub async fn settle_in_tx(
    c: &mut AsyncPgConnection,
    s: &Settlement,
    now: DateTime<Utc>,
) -> Result<Settled, InvoicingError> {
    let (customer_id, total_ttc, status): (Uuid, Decimal, InvoiceStatus) = invoices::table
        .find(s.invoice_id)
        .select((invoices::customer_id, invoices::total_ttc, invoices::status))
        .for_update()
        .first(c)
        .await
        .optional()?
        .ok_or(InvoicingError::NotFound(s.invoice_id))?;
    let (paid, credited) = settled_amounts(c, &[s.invoice_id])
        .await?
        .remove(&s.invoice_id)
        .unwrap_or_default();
    let (due, _) = settled_status(total_ttc, paid, credited, false);
    if s.amount <= Decimal::ZERO || s.amount > due {
        return Err(InvoicingError::BeyondDue {
            invoice: s.invoice_id,
            due,
        });
    }
    super::store::eur(s.amount)?;
    diesel::insert_into(invoice_settlements::table)
        .values((
            invoice_settlements::id.eq(Uuid::now_v7()),
            invoice_settlements::invoice_id.eq(s.invoice_id),
            invoice_settlements::customer_id.eq(customer_id),
            invoice_settlements::kind.eq(s.kind.as_str()),
            invoice_settlements::source_id.eq(s.source_id),
            invoice_settlements::amount.eq(s.amount),
            invoice_settlements::settled_on.eq(s.settled_on),
            invoice_settlements::created_at.eq(now),
        ))
        .execute(c)
        .await?;
    let (paid, credited) = match s.kind {
        SettlementKind::CreditNote => (paid, credited + s.amount),
        SettlementKind::Payment | SettlementKind::CreditBalance => (paid + s.amount, credited),
        SettlementKind::PaymentReturn => (paid - s.amount, credited),
    };
    let (due, new_status) =
        settled_status(total_ttc, paid, credited, status == InvoiceStatus::Overdue);
    if new_status != status {
        diesel::update(invoices::table.find(s.invoice_id))
            .set(invoices::status.eq(new_status.as_str()))
            .execute(c)
            .await?;
    }
    Ok(Settled {
        customer_id,
        due,
        status: new_status,
    })
}

/// Gives back, inside the caller's transaction, `amount` of what the payment `payment`
/// paid on `invoice` (its SEPA collection was returned): a `payment_return` settlement on
/// `on`, and the invoice open again (`issued`; the dunning job marks it overdue past its
/// due date). Never more than what was paid on it.
pub async fn return_payment_in_tx(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
    payment: Uuid,
    amount: Decimal,
    on: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Settled, InvoicingError> {
    let (customer_id, total_ttc): (Uuid, Decimal) = invoices::table
        .find(invoice)
        .select((invoices::customer_id, invoices::total_ttc))
        .for_update()
        .first(c)
        .await
        .optional()?
        .ok_or(InvoicingError::NotFound(invoice))?;
    let (paid, credited) = settled_amounts(c, &[invoice])
        .await?
        .remove(&invoice)
        .unwrap_or_default();
    if amount <= Decimal::ZERO || amount > paid {
        return Err(InvoicingError::BeyondDue { invoice, due: paid });
    }
    diesel::insert_into(invoice_settlements::table)
        .values((
            invoice_settlements::id.eq(Uuid::now_v7()),
            invoice_settlements::invoice_id.eq(invoice),
            invoice_settlements::customer_id.eq(customer_id),
            invoice_settlements::kind.eq(SettlementKind::PaymentReturn.as_str()),
            invoice_settlements::source_id.eq(payment),
            invoice_settlements::amount.eq(amount),
            invoice_settlements::settled_on.eq(on),
            invoice_settlements::created_at.eq(now),
        ))
        .execute(c)
        .await?;
    let (due, status) = settled_status(total_ttc, paid - amount, credited, false);
    diesel::update(invoices::table.find(invoice))
        .set(invoices::status.eq(status.as_str()))
        .execute(c)
        .await?;
    Ok(Settled {
        customer_id,
        due,
        status,
    })
}

/// The customer's invoices with something still due, oldest first (issue date, then
/// number): the order payments are allocated in.
pub async fn open_invoices(
    c: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<Vec<OpenInvoice>, diesel::result::Error> {
    #[derive(Queryable, Selectable)]
    #[diesel(table_name = invoices)]
    struct OpenRow {
        id: Uuid,
        number: String,
        issued_on: NaiveDate,
        due_on: NaiveDate,
        status: InvoiceStatus,
        total_ttc: Decimal,
    }
    let rows: Vec<OpenRow> = invoices::table
        .filter(invoices::customer_id.eq(customer))
        .filter(invoices::status.eq_any([
            InvoiceStatus::Issued.as_str(),
            InvoiceStatus::Overdue.as_str(),
        ]))
        .order((invoices::issued_on, invoices::year, invoices::seq))
        .select(OpenRow::as_select())
        .load(c)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut settled = settled_amounts(c, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let (paid, credited) = settled.remove(&r.id).unwrap_or_default();
            OpenInvoice {
                due: r.total_ttc - paid - credited,
                id: r.id,
                number: r.number,
                issued_on: r.issued_on,
                due_on: r.due_on,
                status: r.status,
            }
        })
        .collect())
}
