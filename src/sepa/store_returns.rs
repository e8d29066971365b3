//! Rejects and returns in the database: a report is applied whole or not at all, in one
//! transaction, once (its message id is unique). Locks follow the batches' order: the
//! batches concerned (in id order), then their customers (in id order), the invoices, the
//! ledger last.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::collection::CollectionStatus;
use super::returns::*;
use super::{MandateStatus, SepaError};
use crate::calendar::{paris_date, paris_midnight};
use crate::error::FieldError;
use crate::invoicing::store_settlements::return_payment_in_tx;
use crate::invoicing::InvoiceStatus;
use crate::ledger::chart::{CustomerAccount, Platform};
use crate::ledger::store as ledger;
use crate::ledger::{NewTransaction, Posting};
use crate::payments::eur_amount;
use crate::payments::store::withdraw_if_unpaid_in_tx;
use crate::schema::{invoices, mandates, sepa_batches, sepa_collections, sepa_return_files};

/// A collection a report names.
#[derive(Queryable)]
struct Named {
    id: Uuid,
    invoice_id: Uuid,
    customer_id: Uuid,
    mandate_id: Uuid,
    end_to_end_id: String,
    attempt: i32,
    amount: Decimal,
    status: CollectionStatus,
    payment_id: Option<Uuid>,
}

/// Applies the report `xml` at `now`: each collection it names comes back (rejected before
/// settlement: 5112 → 411; returned after: 512 → 411 and its payment given back), its
/// invoice open again, its reason code recorded and acted on ([`action`]). A report
/// imported before answers its first report (`true`); one with a part that cannot be
/// applied changes nothing and names every such part.
pub async fn import(
    conn: &mut AsyncPgConnection,
    xml: &str,
    now: DateTime<Utc>,
) -> Result<(ReturnReport, bool), SepaError> {
    let report = read(xml).map_err(SepaError::Invalid)?;
    crate::retry_transaction!(conn, SepaError, |c| {
        // a report is imported once: the second waits on the first's row, then replays it
        let id = Uuid::now_v7();
        let claimed = diesel::insert_into(sepa_return_files::table)
            .values((
                sepa_return_files::id.eq(id),
                sepa_return_files::message_id.eq(&report.message_id),
                sepa_return_files::format.eq(report.format.as_str()),
                sepa_return_files::imported_at.eq(now),
                sepa_return_files::report.eq(serde_json::json!({})),
            ))
            .on_conflict(sepa_return_files::message_id)
            .do_nothing()
            .execute(c)
            .await?;
        if claimed == 0 {
            let first: serde_json::Value = sepa_return_files::table
                .filter(sepa_return_files::message_id.eq(&report.message_id))
                .select(sepa_return_files::report)
                .first(c)
                .await?;
            let first: ReturnReport = serde_json::from_value(first)
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
            return Ok((first, true));
        }
        let e2e: Vec<&str> = report
            .came_back
            .iter()
            .map(|b| b.end_to_end_id.as_str())
            .collect();
        let batches: BTreeSet<Uuid> = sepa_collections::table
            .filter(sepa_collections::end_to_end_id.eq_any(&e2e))
            .select(sepa_collections::batch_id)
            .load::<Uuid>(c)
            .await?
            .into_iter()
            .collect();
        for b in &batches {
            sepa_batches::table
                .find(b)
                .select(sepa_batches::id)
                .for_update()
                .first::<Uuid>(c)
                .await?;
        }
        let named: Vec<Named> = sepa_collections::table
            .filter(sepa_collections::end_to_end_id.eq_any(&e2e))
            .select((
                sepa_collections::id,
                sepa_collections::invoice_id,
                sepa_collections::customer_id,
                sepa_collections::mandate_id,
                sepa_collections::end_to_end_id,
                sepa_collections::attempt,
                sepa_collections::amount,
                sepa_collections::status,
                sepa_collections::payment_id,
            ))
            .load(c)
            .await?;
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        for b in &report.came_back {
            let found = named.iter().find(|n| n.end_to_end_id == b.end_to_end_id);
            let problem = match found.map(|n| n.status) {
                None => Some("no collection has this end-to-end id".to_string()),
                Some(CollectionStatus::Submitted | CollectionStatus::Settled) => None,
                Some(s) => Some(format!(
                    "the collection is {}: it cannot come back",
                    s.as_str()
                )),
            };
            if !seen.insert(b.end_to_end_id.as_str()) {
                errors.push(FieldError::new(
                    &b.end_to_end_id,
                    "named twice in the report",
                ));
            } else if let Some(problem) = problem {
                errors.push(FieldError::new(&b.end_to_end_id, problem));
            }
        }
        if !errors.is_empty() {
            return Err(SepaError::NotApplied(errors));
        }
        let customers: BTreeSet<Uuid> = named.iter().map(|n| n.customer_id).collect();
        for customer in &customers {
            crate::customers::store::status_for_update(c, *customer).await?;
        }
        let mut applied = Vec::new();
        for b in &report.came_back {
            let Some(n) = named.iter().find(|n| n.end_to_end_id == b.end_to_end_id) else {
                continue;
            };
            let kind = come_back(c, n, &b.reason, id, now).await?;
            let attempt = u32::try_from(n.attempt).unwrap_or(u32::MAX);
            let mut action = action(&b.reason, attempt);
            if action == ReturnAction::PresentedAgain {
                // the mandate was spent by this collection (OOFF, FNAL): nothing presents
                // it again
                let status: MandateStatus = mandates::table
                    .find(n.mandate_id)
                    .select(mandates::status)
                    .first(c)
                    .await?;
                if status != MandateStatus::Active {
                    action = ReturnAction::Dunning;
                }
            }
            if action == ReturnAction::MandateRevoked {
                diesel::update(
                    mandates::table
                        .filter(mandates::id.eq(n.mandate_id))
                        .filter(mandates::status.eq(MandateStatus::Active)),
                )
                .set((
                    mandates::status.eq(MandateStatus::Revoked),
                    mandates::status_changed_at.eq(now),
                    mandates::status_reason.eq(format!(
                        "the debtor's bank answered {} to collection {}",
                        b.reason, n.end_to_end_id
                    )),
                ))
                .execute(c)
                .await?;
            }
            applied.push(AppliedReturn {
                end_to_end_id: n.end_to_end_id.clone(),
                collection_id: n.id,
                invoice_id: n.invoice_id,
                reason: b.reason.clone(),
                kind,
                action,
            });
        }
        let view = ReturnReport {
            id,
            format: report.format,
            message_id: report.message_id.clone(),
            applied,
            imported_at: now,
        };
        let stored = serde_json::to_value(&view)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        diesel::update(sepa_return_files::table.find(id))
            .set(sepa_return_files::report.eq(stored))
            .execute(c)
            .await?;
        Ok((view, false))
    })
}

/// Brings the collection `n` back for `reason` (report `file`): the ledger's movement
/// reversed, the invoice open again, the collection `rejected` or `returned`.
async fn come_back(
    c: &mut AsyncPgConnection,
    n: &Named,
    reason: &str,
    file: Uuid,
    now: DateTime<Utc>,
) -> Result<ReturnKind, SepaError> {
    let amount = eur_amount(n.amount, "amount")?;
    let receivable =
        ledger::ensure_account(c, &CustomerAccount::Receivable.new_account(n.customer_id))
            .await?
            .id;
    let today: NaiveDate = paris_date(now);
    let (kind, from, status) = match (n.status, n.payment_id) {
        (CollectionStatus::Settled, Some(payment)) => {
            let settled = return_payment_in_tx(c, n.invoice_id, payment, n.amount, today, now)
                .await
                .map_err(crate::payments::PaymentError::from)?;
            // what the payment released (tickets, Support VIP) waits for payment again
            withdraw_if_unpaid_in_tx(c, n.invoice_id, &settled, now).await?;
            (
                ReturnKind::Returned,
                Platform::Bank,
                CollectionStatus::Returned,
            )
        }
        _ => {
            diesel::update(
                invoices::table
                    .filter(invoices::id.eq(n.invoice_id))
                    .filter(invoices::status.eq(InvoiceStatus::CollectionPending.as_str())),
            )
            .set(invoices::status.eq(InvoiceStatus::Issued.as_str()))
            .execute(c)
            .await?;
            (
                ReturnKind::Rejected,
                Platform::DirectDebitsInTransit,
                CollectionStatus::Rejected,
            )
        }
    };
    let tx = NewTransaction::new(
        format!("sepa-return:{}", n.id),
        "sepa.return",
        vec![
            Posting::debit(receivable, amount),
            Posting::credit(from.id(), amount),
        ],
    )?
    .effective_at(paris_midnight(today))
    .posted_at(now)
    .description(format!(
        "SEPA collection {} came back: {reason}",
        n.end_to_end_id
    ));
    ledger::post_in_tx(c, &tx).await?;
    diesel::update(sepa_collections::table.find(n.id))
        .set((
            sepa_collections::status.eq(status),
            sepa_collections::return_reason.eq(reason),
            sepa_collections::return_file_id.eq(file),
        ))
        .execute(c)
        .await?;
    Ok(kind)
}
