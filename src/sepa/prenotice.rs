//! The pre-notification of a SEPA collection (issue 13; EPC rulebook: the debtor learns the
//! amount and the day before the debit). An invoice issued to a customer with a mandate it
//! can be collected under states, on the invoice itself, what will be debited, when, under
//! which mandate and from which account. It is written once, with the invoice, and never
//! changes; a collection batch takes only the invoices that announced a collection on or
//! before its date.

use std::collections::HashMap;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::collection::announced_collection_date;
use super::{lapse_cutoff, MandateStatus, PaymentType};
use crate::money::{DecimalString, Unit};
use crate::schema::{invoice_direct_debits, mandates};

/// What an invoice announces of its collection by SEPA direct debit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "collection_date": "2026-12-24",
    "amount": "47.88",
    "mandate_reference": "GL-2026-000123",
    "creditor_id": "FR72ZZZ123456",
    "debtor_iban": "FR7630006000011234567890189"
}))]
pub struct DirectDebitNotice {
    /// The day the account is debited: the first TARGET2 business day on or after the due
    /// date, and at least the pre-notification period (14 days unless configured shorter)
    /// after the issue.
    pub collection_date: NaiveDate,
    /// What is debited: the invoice's total less what its customer's credit balance paid
    /// when it was issued.
    #[schema(example = "47.88")]
    pub amount: DecimalString,
    /// The mandate (UMR) the collection is made under.
    pub mandate_reference: String,
    /// The creditor identifier (ICS).
    pub creditor_id: String,
    /// The account debited, as the mandate named it when the invoice was issued.
    pub debtor_iban: String,
}

/// A notice as stored: written once by [`announce_in_tx`], read by [`of_invoices`].
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = invoice_direct_debits)]
struct NoticeRow {
    invoice_id: Uuid,
    mandate_id: Uuid,
    mandate_reference: String,
    creditor_id: String,
    debtor_iban: String,
    amount: Decimal,
    collection_on: NaiveDate,
}

impl NoticeRow {
    /// Its invoice, and what the invoice announces.
    fn notice(self) -> (Uuid, DirectDebitNotice) {
        let notice = DirectDebitNotice {
            collection_date: self.collection_on,
            amount: Unit::Eur.show(self.amount),
            mandate_reference: self.mandate_reference,
            creditor_id: self.creditor_id,
            debtor_iban: self.debtor_iban,
        };
        (self.invoice_id, notice)
    }
}

/// An invoice just issued, as its pre-notification needs it.
#[derive(Debug, Clone, Copy)]
pub struct Issued {
    pub invoice: Uuid,
    pub customer: Uuid,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    /// What it still asks once the credit balance has paid what it could.
    pub amount_due: Decimal,
}

/// Announces, inside the issuing transaction, the collection of each invoice of `issued`
/// that still asks something and whose customer holds a mandate it can be collected under
/// (active, not lapsed, not asked to end, and for a one-off mandate none announced under it
/// yet; a recurrent one first, the latest when several): one read, one insert. The notices
/// written, by invoice.
pub async fn announce_in_tx(
    c: &mut AsyncPgConnection,
    issued: &[Issued],
) -> Result<HashMap<Uuid, DirectDebitNotice>, diesel::result::Error> {
    let owing: Vec<&Issued> = issued
        .iter()
        .filter(|i| i.amount_due > Decimal::ZERO)
        .collect();
    let Some(first) = <[&Issued]>::first(&owing) else {
        return Ok(HashMap::new());
    };
    let customers: Vec<Uuid> = owing.iter().map(|i| i.customer).collect();
    let cutoff = lapse_cutoff(first.issued_on);
    // a one-off mandate announces one collection; one asked to end announces none
    let announced_under =
        invoice_direct_debits::table.filter(invoice_direct_debits::mandate_id.eq(mandates::id));
    let live: Vec<(Uuid, Uuid, String, Option<String>)> = mandates::table
        .filter(mandates::customer_id.eq_any(&customers))
        .filter(mandates::status.eq(MandateStatus::Active))
        .filter(mandates::final_requested_at.is_null())
        .filter(
            mandates::payment_type
                .eq(PaymentType::Recurrent)
                .or(diesel::dsl::not(diesel::dsl::exists(announced_under))),
        )
        .filter(super::store::not_lapsed(cutoff))
        .order((
            mandates::customer_id,
            mandates::payment_type.desc(),
            mandates::id.desc(),
        ))
        .select((
            mandates::customer_id,
            mandates::id,
            mandates::reference,
            mandates::iban,
        ))
        .load(c)
        .await?;
    let mut latest: HashMap<Uuid, (Uuid, String, String)> = HashMap::new();
    for (customer, id, reference, iban) in live {
        // an active mandate has its IBAN (the database's check)
        if let Some(iban) = iban {
            latest.entry(customer).or_insert((id, reference, iban));
        }
    }
    let creditor = super::creditor::creditor();
    let rows: Vec<NoticeRow> = owing
        .into_iter()
        .filter_map(|i| {
            let (mandate, reference, iban) = latest.get(&i.customer)?;
            Some(NoticeRow {
                invoice_id: i.invoice,
                mandate_id: *mandate,
                mandate_reference: reference.clone(),
                creditor_id: creditor.creditor_id.clone(),
                debtor_iban: iban.clone(),
                amount: i.amount_due,
                collection_on: announced_collection_date(
                    i.issued_on,
                    i.due_on,
                    creditor.prenotification_days,
                ),
            })
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(invoice_direct_debits::table)
            .values(&rows)
            .execute(c)
            .await?;
    }
    Ok(rows.into_iter().map(NoticeRow::notice).collect())
}

/// The notices of `invoices`, by invoice.
pub async fn of_invoices(
    c: &mut AsyncPgConnection,
    invoices: &[Uuid],
) -> Result<HashMap<Uuid, DirectDebitNotice>, diesel::result::Error> {
    let rows: Vec<NoticeRow> = invoice_direct_debits::table
        .filter(invoice_direct_debits::invoice_id.eq_any(invoices))
        .select(NoticeRow::as_select())
        .load(c)
        .await?;
    Ok(rows.into_iter().map(NoticeRow::notice).collect())
}
