//! A batch as read: its view and its pain.008 file, rebuilt from what the batch froze.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::super::collection::*;
use super::super::{MandateScheme, SepaError};
use crate::customers::Address;
use crate::money::{round_cents, DecimalString};
use crate::schema::{invoices, sepa_batches, sepa_collections};

#[derive(Queryable, Selectable)]
#[diesel(table_name = sepa_batches)]
pub(super) struct BatchRow {
    pub(super) id: Uuid,
    pub(super) message_id: String,
    pub(super) collection_date: NaiveDate,
    pub(super) status: BatchStatus,
    pub(super) total: Decimal,
    pub(super) created_at: DateTime<Utc>,
    pub(super) submitted_at: Option<DateTime<Utc>>,
    pub(super) settled_at: Option<DateTime<Utc>>,
    pub(super) value_date: Option<NaiveDate>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = sepa_collections)]
pub(super) struct CollectionRow {
    pub(super) id: Uuid,
    pub(super) invoice_id: Uuid,
    pub(super) customer_id: Uuid,
    pub(super) mandate_id: Uuid,
    pub(super) end_to_end_id: String,
    pub(super) amount: Decimal,
    pub(super) sequence_type: SequenceType,
    pub(super) scheme: MandateScheme,
    pub(super) mandate_reference: String,
    pub(super) mandate_signed_on: NaiveDate,
    pub(super) debtor_name: String,
    pub(super) debtor_iban: String,
    pub(super) debtor_bic: Option<String>,
    pub(super) debtor_address: serde_json::Value,
    pub(super) amended_from_iban: Option<String>,
    pub(super) status: CollectionStatus,
    pub(super) payment_id: Option<Uuid>,
}

pub(super) async fn rows(
    c: &mut AsyncPgConnection,
    batch: Uuid,
) -> Result<Vec<(CollectionRow, String)>, diesel::result::Error> {
    sepa_collections::table
        .inner_join(invoices::table)
        .filter(sepa_collections::batch_id.eq(batch))
        .order((sepa_collections::customer_id, sepa_collections::id))
        .select((CollectionRow::as_select(), invoices::number))
        .load(c)
        .await
}

/// The collections of `rows` as the file carries them.
pub(super) fn file_order(rows: &[(CollectionRow, String)]) -> Result<Vec<Collection>, DieselError> {
    rows.iter()
        .map(|(r, number)| {
            let address: Address = serde_json::from_value(r.debtor_address.clone())
                .map_err(|e| DieselError::DeserializationError(Box::new(e)))?;
            Ok(Collection {
                end_to_end_id: r.end_to_end_id.clone(),
                invoice_number: number.clone(),
                amount: r.amount,
                sequence: r.sequence_type,
                scheme: r.scheme,
                mandate_reference: r.mandate_reference.clone(),
                mandate_signed_on: r.mandate_signed_on,
                debtor_name: r.debtor_name.clone(),
                debtor_iban: r.debtor_iban.clone(),
                debtor_bic: r.debtor_bic.clone(),
                debtor_address: address,
                amended_from_iban: r.amended_from_iban.clone(),
            })
        })
        .collect()
}

pub(super) async fn view_of(
    c: &mut AsyncPgConnection,
    b: BatchRow,
) -> Result<BatchView, DieselError> {
    let rows = rows(c, b.id).await?;
    let collections = file_order(&rows)?;
    let groups = groups(&collections)
        .into_iter()
        .map(|((scheme, sequence_type), of)| GroupView {
            scheme,
            sequence_type,
            collections: u32::try_from(of.len()).unwrap_or(u32::MAX),
            total: DecimalString(round_cents(of.iter().map(|c| c.amount).sum())),
        })
        .collect();
    let sum_of = |statuses: &[CollectionStatus]| {
        let sum: Decimal = rows
            .iter()
            .filter(|(r, _)| statuses.contains(&r.status))
            .map(|(r, _)| r.amount)
            .sum();
        DecimalString(round_cents(sum))
    };
    let collected = sum_of(&[CollectionStatus::Settled]);
    let came_back = sum_of(&[CollectionStatus::Rejected, CollectionStatus::Returned]);
    Ok(BatchView {
        id: b.id,
        message_id: b.message_id,
        collection_date: b.collection_date,
        status: b.status,
        collections_count: u32::try_from(rows.len()).unwrap_or(u32::MAX),
        total: DecimalString(round_cents(b.total)),
        collected,
        came_back,
        groups,
        collections: rows
            .into_iter()
            .map(|(r, invoice_number)| CollectionView {
                id: r.id,
                end_to_end_id: r.end_to_end_id,
                invoice_id: r.invoice_id,
                invoice_number,
                customer_id: r.customer_id,
                mandate_id: r.mandate_id,
                mandate_reference: r.mandate_reference,
                amount: DecimalString(round_cents(r.amount)),
                sequence_type: r.sequence_type,
                scheme: r.scheme,
                amendment: r.amended_from_iban.is_some(),
                status: r.status,
                payment_id: r.payment_id,
            })
            .collect(),
        created_at: b.created_at,
        submitted_at: b.submitted_at,
        settled_at: b.settled_at,
        value_date: b.value_date,
    })
}

pub(super) async fn batch_row(
    c: &mut AsyncPgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<BatchRow>, DieselError> {
    let q = sepa_batches::table.find(id).select(BatchRow::as_select());
    if lock {
        q.for_update().first(c).await.optional()
    } else {
        q.first(c).await.optional()
    }
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<BatchView>, DieselError> {
    match batch_row(conn, id, false).await? {
        Some(b) => Ok(Some(view_of(conn, b).await?)),
        None => Ok(None),
    }
}

/// The pain.008.001.08 file of batch `id` (`None`: no such batch).
pub async fn pain008(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<String>, SepaError> {
    let Some(b) = batch_row(conn, id, false).await? else {
        return Ok(None);
    };
    let rows = rows(conn, id).await?;
    let file = crate::sepa::collection::pain008(
        b.id,
        b.created_at,
        b.collection_date,
        crate::sepa::creditor::creditor(),
        &file_order(&rows)?,
    )
    .map_err(SepaError::File)?;
    Ok(Some(file))
}
