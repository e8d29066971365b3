//! Collection batches in the database. Each use case is one transaction that starts at the
//! batch's row (`FOR UPDATE`: of two concurrent submits or settles the second waits, then
//! finds the batch moved on and answers it as it is), then takes its customers in id order
//! (`FOR NO KEY UPDATE`, as payments do), their invoices (`settle_in_tx`), and the ledger
//! last. An invoice is in at most one collection not yet settled (a partial unique index).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

mod views;

use views::*;
pub use views::{get, pain008};

use super::collection::*;
use super::{lapse_cutoff, MandateScheme, MandateStatus, PaymentType, SepaError};
use crate::calendar::paris_date;
use crate::error::FieldError;
use crate::idempotency::{self, IdempotencyKey};
use crate::invoicing::store_settlements::settled_amounts;
use crate::invoicing::InvoiceStatus;
use crate::ledger::chart::{CustomerAccount, Platform};
use crate::ledger::store as ledger;
use crate::ledger::{NewTransaction, Posting};
use crate::payments::store::{record_in_tx, OwedOn, Received, Taken};
use crate::payments::{eur_amount, PaymentMethod};
use crate::schema::{
    customers, invoice_direct_debits, invoices, mandate_amendments, mandates, sepa_batches,
    sepa_collections,
};

fn invalid(field: &str, message: impl Into<String>) -> SepaError {
    SepaError::Invalid(vec![FieldError::new(field, message)])
}

/// An invoice a batch may collect, and the mandate its pre-notification named.
#[derive(Queryable)]
struct Candidate {
    invoice: Uuid,
    number: String,
    customer: Uuid,
    total_ttc: Decimal,
    mandate: Uuid,
}

/// The mandate a customer is collected under, and the debtor's address.
#[derive(Queryable)]
struct Debtor {
    mandate: Uuid,
    reference: String,
    signed_on: NaiveDate,
    debtor_name: Option<String>,
    iban: Option<String>,
    bic: Option<String>,
    scheme: MandateScheme,
    last_collected_on: Option<NaiveDate>,
    payment_type: PaymentType,
    final_requested_at: Option<DateTime<Utc>>,
    street_number: Option<String>,
    street: String,
    postcode: String,
    town: String,
    country: String,
}

/// Makes the batch collecting on `req.collection_date` at `now` (see [`NewBatch`]); with
/// `key`, a retry answers the first (`true`).
pub async fn create(
    conn: &mut AsyncPgConnection,
    req: &NewBatch,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(BatchView, bool), SepaError> {
    let today = paris_date(now);
    let date = req.collection_date;
    check_collection_date(date, today).map_err(|e| invalid("collection_date", e))?;
    let result = crate::retry_transaction!(conn, SepaError, |c| {
        let first = idempotency::replay::<_, SepaError>(c, key, "sepa_batches.create", req, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        let cutoff = lapse_cutoff(today);
        let in_collection = sepa_collections::table
            .filter(sepa_collections::invoice_id.eq(invoices::id))
            .filter(
                sepa_collections::status
                    .eq_any([CollectionStatus::Pending, CollectionStatus::Submitted]),
            );
        // came back for a reason that asks no new presentation, or came back twice: the
        // dunning job's
        let given_up = sepa_collections::table
            .filter(sepa_collections::invoice_id.eq(invoices::id))
            .filter(
                sepa_collections::status
                    .eq_any([CollectionStatus::Rejected, CollectionStatus::Returned]),
            )
            .filter(
                sepa_collections::attempt
                    .ge(2)
                    .or(sepa_collections::return_reason
                        .ne_all(super::returns::PRESENT_AGAIN)
                        .assume_not_null()),
            );
        // pre-notified: the invoice announced its collection on or before this date, under
        // a mandate that is still active
        let candidates: Vec<Candidate> = invoices::table
            .inner_join(
                invoice_direct_debits::table.on(invoice_direct_debits::invoice_id.eq(invoices::id)),
            )
            .inner_join(mandates::table.on(mandates::id.eq(invoice_direct_debits::mandate_id)))
            .filter(invoice_direct_debits::collection_on.le(date))
            .filter(mandates::status.eq(MandateStatus::Active))
            .filter(super::store::not_lapsed(cutoff))
            .filter(invoices::status.eq_any([
                InvoiceStatus::Issued.as_str(),
                InvoiceStatus::Overdue.as_str(),
            ]))
            .filter(diesel::dsl::not(diesel::dsl::exists(in_collection)))
            .filter(diesel::dsl::not(diesel::dsl::exists(given_up)))
            .order((invoices::customer_id, invoices::issued_on, invoices::seq))
            .limit(i64::try_from(MAX_COLLECTIONS).unwrap_or(i64::MAX))
            .select((
                invoices::id,
                invoices::number,
                invoices::customer_id,
                invoices::total_ttc,
                mandates::id,
            ))
            .load(c)
            .await?;
        let ids: Vec<Uuid> = candidates.iter().map(|i| i.invoice).collect();
        let mut settled = settled_amounts(c, &ids).await?;
        let id = Uuid::now_v7();
        let mut plan: Vec<(Candidate, Decimal, SequenceType)> = Vec::new();
        // by mandate: its debtor, and whether nothing was collected under it yet
        let mut debtors: BTreeMap<Uuid, (Debtor, bool)> = BTreeMap::new();
        for cand in candidates {
            let (paid, credited) = settled.remove(&cand.invoice).unwrap_or_default();
            let due = cand.total_ttc - paid - credited;
            if due <= Decimal::ZERO {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = debtors.entry(cand.mandate) {
                // revoked since the candidates were read: nothing to collect under it
                let Some(d) = debtor(c, cand.mandate, cutoff).await? else {
                    continue;
                };
                let fresh =
                    d.last_collected_on.is_none() && !collected_before(c, d.mandate).await?;
                slot.insert((d, fresh));
            }
            let Some((d, first)) = debtors.get_mut(&cand.mandate) else {
                continue;
            };
            let sequence = match (d.payment_type, *first) {
                // a one-off mandate collects once, ever
                (PaymentType::OneOff, true) => SequenceType::Ooff,
                (PaymentType::OneOff, false) => continue,
                (PaymentType::Recurrent, true) => SequenceType::Frst,
                (PaymentType::Recurrent, false) => SequenceType::Rcur,
            };
            *first = false;
            plan.push((cand, due, sequence));
        }
        // a mandate asked to end: its last collection in this batch is its final one
        for (mandate, (d, _)) in &debtors {
            if d.final_requested_at.is_some() {
                if let Some(last) = plan
                    .iter_mut()
                    .rev()
                    .find(|(c, _, _)| c.mandate == *mandate)
                {
                    last.2 = SequenceType::Fnal;
                }
            }
        }
        if plan.is_empty() {
            return Err(invalid(
                "collection_date",
                format!("no invoice to collect on {date}: none open that announced its collection by then (the invoice is the pre-notification), of a customer with an active mandate and in no other batch"),
            ));
        }
        let total: Decimal = plan.iter().map(|(_, due, _)| *due).sum();
        diesel::insert_into(sepa_batches::table)
            .values((
                sepa_batches::id.eq(id),
                sepa_batches::message_id.eq(message_id(id)),
                sepa_batches::collection_date.eq(date),
                sepa_batches::status.eq(BatchStatus::Created),
                sepa_batches::collections.eq(i32::try_from(plan.len()).unwrap_or(i32::MAX)),
                sepa_batches::total.eq(total),
                sepa_batches::created_at.eq(now),
            ))
            .execute(c)
            .await?;
        for (cand, due, sequence) in &plan {
            let Some((d, _)) = debtors.get(&cand.mandate) else {
                continue;
            };
            let attempt = attempts(c, cand.invoice).await? + 1;
            let amended_from = amended_from(c, d.mandate, d.iban.as_deref()).await?;
            let address = serde_json::json!({
                "street_number": d.street_number, "street": d.street, "postcode": d.postcode,
                "town": d.town, "country": d.country,
            });
            diesel::insert_into(sepa_collections::table)
                .values((
                    sepa_collections::id.eq(Uuid::now_v7()),
                    sepa_collections::batch_id.eq(id),
                    sepa_collections::invoice_id.eq(cand.invoice),
                    sepa_collections::customer_id.eq(cand.customer),
                    sepa_collections::mandate_id.eq(d.mandate),
                    sepa_collections::end_to_end_id.eq(end_to_end_id(&cand.number, attempt)),
                    sepa_collections::attempt.eq(i32::try_from(attempt).unwrap_or(i32::MAX)),
                    sepa_collections::amount.eq(*due),
                    sepa_collections::sequence_type.eq(*sequence),
                    sepa_collections::scheme.eq(d.scheme),
                    sepa_collections::mandate_reference.eq(&d.reference),
                    sepa_collections::mandate_signed_on.eq(d.signed_on),
                    sepa_collections::debtor_name.eq(d.debtor_name.as_deref().unwrap_or_default()),
                    sepa_collections::debtor_iban.eq(d.iban.as_deref().unwrap_or_default()),
                    sepa_collections::debtor_bic.eq(&d.bic),
                    sepa_collections::debtor_address.eq(address),
                    sepa_collections::amended_from_iban.eq(amended_from),
                    sepa_collections::status.eq(CollectionStatus::Pending),
                ))
                .execute(c)
                .await?;
        }
        // the amendments this batch's collections report
        let mandate_ids: Vec<Uuid> = debtors.values().map(|(d, _)| d.mandate).collect();
        diesel::update(
            mandate_amendments::table
                .filter(mandate_amendments::mandate_id.eq_any(&mandate_ids))
                .filter(mandate_amendments::reported_in.is_null()),
        )
        .set(mandate_amendments::reported_in.eq(id))
        .execute(c)
        .await?;
        let b = batch_row(c, id, false)
            .await?
            .ok_or(SepaError::NotFound(id))?;
        let view = view_of(c, b).await?;
        // the file must build: the crate checks it against the EPC rules
        pain008_of(c, id).await?;
        idempotency::record(c, key, &view).await?;
        Ok((view, false))
    });
    result.map_err(|e| match e {
        SepaError::Database(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            SepaError::BatchConflict
        }
        e => e,
    })
}

async fn pain008_of(c: &mut AsyncPgConnection, id: Uuid) -> Result<String, SepaError> {
    pain008(c, id).await?.ok_or(SepaError::NotFound(id))
}

/// The mandate `mandate`, while active, and its debtor's address.
async fn debtor(
    c: &mut AsyncPgConnection,
    mandate: Uuid,
    cutoff: NaiveDate,
) -> Result<Option<Debtor>, DieselError> {
    mandates::table
        .inner_join(customers::table)
        .filter(mandates::id.eq(mandate))
        .filter(mandates::status.eq(MandateStatus::Active))
        .filter(super::store::not_lapsed(cutoff))
        .select((
            mandates::id,
            mandates::reference,
            mandates::signed_on,
            mandates::debtor_name,
            mandates::iban,
            mandates::bic,
            mandates::scheme,
            mandates::last_collected_on,
            mandates::payment_type,
            mandates::final_requested_at,
            customers::street_number,
            customers::street,
            customers::postcode,
            customers::town,
            customers::country,
        ))
        .first(c)
        .await
        .optional()
}

/// Whether a collection under the mandate is already in a batch (then the next is RCUR).
async fn collected_before(c: &mut AsyncPgConnection, mandate: Uuid) -> Result<bool, DieselError> {
    diesel::select(diesel::dsl::exists(
        sepa_collections::table.filter(sepa_collections::mandate_id.eq(mandate)),
    ))
    .get_result(c)
    .await
}

async fn attempts(c: &mut AsyncPgConnection, invoice: Uuid) -> Result<u32, DieselError> {
    let n: i64 = sepa_collections::table
        .filter(sepa_collections::invoice_id.eq(invoice))
        .count()
        .get_result(c)
        .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The IBAN before the mandate's unreported amendments, when they changed it.
async fn amended_from(
    c: &mut AsyncPgConnection,
    mandate: Uuid,
    current: Option<&str>,
) -> Result<Option<String>, DieselError> {
    let first: Option<Option<String>> = mandate_amendments::table
        .filter(mandate_amendments::mandate_id.eq(mandate))
        .filter(mandate_amendments::reported_in.is_null())
        .filter(mandate_amendments::previous_iban.is_not_null())
        .order(mandate_amendments::id)
        .select(mandate_amendments::previous_iban)
        .first(c)
        .await
        .optional()?;
    Ok(first
        .flatten()
        .filter(|previous| Some(previous.as_str()) != current))
}

/// The customers of a batch's rows, each with its collections, in id order.
fn by_customer(rows: Vec<(CollectionRow, String)>) -> BTreeMap<Uuid, Vec<CollectionRow>> {
    let mut of: BTreeMap<Uuid, Vec<CollectionRow>> = BTreeMap::new();
    for (r, _) in rows {
        of.entry(r.customer_id).or_default().push(r);
    }
    of
}

/// Submits batch `id` at `now` (its file went to the bank): per customer, receivable 411 →
/// direct debits in transit 5112 for its collections, its invoices `collection_pending`,
/// its mandate's last collection the batch's date. A submitted batch again: as it is.
pub async fn submit(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<BatchView, SepaError> {
    crate::retry_transaction!(conn, SepaError, |c| {
        let b = batch_row(c, id, true)
            .await?
            .ok_or(SepaError::NotFound(id))?;
        if b.status != BatchStatus::Created {
            return Ok(view_of(c, b).await?);
        }
        for (customer, collections) in by_customer(rows(c, id).await?) {
            crate::customers::store::status_for_update(c, customer).await?;
            let invoice_ids: Vec<Uuid> = collections.iter().map(|r| r.invoice_id).collect();
            let open = crate::invoicing::store_settlements::open_invoices(c, customer).await?;
            for r in &collections {
                if !open
                    .iter()
                    .any(|o| o.id == r.invoice_id && o.due == r.amount)
                {
                    return Err(SepaError::WrongState(
                        "batch",
                        id,
                        "created",
                        "an invoice of it was paid or credited since it was made: make a new batch",
                    ));
                }
            }
            diesel::update(invoices::table.filter(invoices::id.eq_any(&invoice_ids)))
                .set(invoices::status.eq(InvoiceStatus::CollectionPending.as_str()))
                .execute(c)
                .await?;
            let sum: Decimal = collections.iter().map(|r| r.amount).sum();
            let amount = eur_amount(sum, "amount")?;
            let receivable =
                ledger::ensure_account(c, &CustomerAccount::Receivable.new_account(customer))
                    .await?
                    .id;
            let tx = NewTransaction::new(
                format!("sepa-submit:{id}:{customer}"),
                "sepa.submit",
                vec![
                    Posting::debit(Platform::DirectDebitsInTransit.id(), amount),
                    Posting::credit(receivable, amount),
                ],
            )?
            .effective_at(now)
            .posted_at(now)
            .description(format!("SEPA collection {} submitted", b.message_id));
            ledger::post_in_tx(c, &tx).await?;
            let mandate_ids: Vec<Uuid> = collections.iter().map(|r| r.mandate_id).collect();
            diesel::update(mandates::table.filter(mandates::id.eq_any(&mandate_ids)))
                .set(mandates::last_collected_on.eq(b.collection_date))
                .execute(c)
                .await?;
        }
        // the last collection presented: a one-off mandate is spent, one asked to end ends
        let spent: Vec<Uuid> = sepa_collections::table
            .filter(sepa_collections::batch_id.eq(id))
            .filter(
                sepa_collections::sequence_type.eq_any([SequenceType::Ooff, SequenceType::Fnal]),
            )
            .select(sepa_collections::mandate_id)
            .load(c)
            .await?;
        if !spent.is_empty() {
            diesel::sql_query(
                "UPDATE mandates SET status = 'revoked', status_changed_at = $1, \
                        status_reason = left(coalesce(status_reason || '; ', '') || $2, 500) \
                  WHERE id = ANY($3) AND status = 'active'",
            )
            .bind::<diesel::sql_types::Timestamptz, _>(now)
            .bind::<diesel::sql_types::Text, _>(format!(
                "its last collection was presented in batch {}",
                b.message_id
            ))
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&spent)
            .execute(c)
            .await?;
        }
        diesel::update(
            sepa_collections::table
                .filter(sepa_collections::batch_id.eq(id))
                .filter(sepa_collections::status.eq(CollectionStatus::Pending)),
        )
        .set(sepa_collections::status.eq(CollectionStatus::Submitted))
        .execute(c)
        .await?;
        diesel::update(sepa_batches::table.find(id))
            .set((
                sepa_batches::status.eq(BatchStatus::Submitted),
                sepa_batches::submitted_at.eq(now),
            ))
            .execute(c)
            .await?;
        let b = batch_row(c, id, false)
            .await?
            .ok_or(SepaError::NotFound(id))?;
        Ok(view_of(c, b).await?)
    })
}

/// Settles the submitted batch `id` at `now`: each collection is a `direct_debit` payment
/// of its invoice on `req.value_date`, recorded by the payments' own path (settlement,
/// release of what the invoice waited for, dunning) against direct debits in transit 5112.
/// A batch settled on that date again: as it is.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    req: &SettleBatch,
    now: DateTime<Utc>,
) -> Result<BatchView, SepaError> {
    let today = paris_date(now);
    if req.value_date > today {
        return Err(invalid(
            "value_date",
            format!(
                "{} is after today ({today}): not credited yet",
                req.value_date
            ),
        ));
    }
    crate::retry_transaction!(conn, SepaError, |c| {
        let b = batch_row(c, id, true)
            .await?
            .ok_or(SepaError::NotFound(id))?;
        match b.status {
            BatchStatus::Settled if b.value_date == Some(req.value_date) => {
                return Ok(view_of(c, b).await?)
            }
            BatchStatus::Settled => {
                return Err(SepaError::WrongState(
                    "batch",
                    id,
                    "settled",
                    "it was settled on another value date",
                ))
            }
            BatchStatus::Created => {
                return Err(SepaError::WrongState(
                    "batch",
                    id,
                    "created",
                    "submit it first",
                ))
            }
            BatchStatus::Submitted => {}
        }
        if req.value_date < b.collection_date {
            return Err(invalid(
                "value_date",
                format!("before the collection date {}", b.collection_date),
            ));
        }
        for (customer, collections) in by_customer(rows(c, id).await?) {
            crate::customers::store::status_for_update(c, customer).await?;
            // a collection rejected before settlement (a pain.002) brings nothing
            for r in collections
                .into_iter()
                .filter(|r| r.status == CollectionStatus::Submitted)
            {
                let payment = Uuid::now_v7();
                let received = Received {
                    id: payment,
                    customer,
                    reference: &r.end_to_end_id,
                    method: PaymentMethod::DirectDebit,
                    amount: r.amount,
                    value_date: req.value_date,
                };
                // an invoice overdue before its collection may lift the customer's dunning
                let taken = [Taken {
                    invoice: r.invoice_id,
                    amount: r.amount,
                    was_overdue: true,
                }];
                record_in_tx(c, &received, &taken, OwedOn::DirectDebitsInTransit, now).await?;
                diesel::update(sepa_collections::table.find(r.id))
                    .set((
                        sepa_collections::status.eq(CollectionStatus::Settled),
                        sepa_collections::payment_id.eq(payment),
                    ))
                    .execute(c)
                    .await?;
            }
        }
        diesel::update(sepa_batches::table.find(id))
            .set((
                sepa_batches::status.eq(BatchStatus::Settled),
                sepa_batches::settled_at.eq(now),
                sepa_batches::value_date.eq(req.value_date),
            ))
            .execute(c)
            .await?;
        let b = batch_row(c, id, false)
            .await?
            .ok_or(SepaError::NotFound(id))?;
        Ok(view_of(c, b).await?)
    })
}
