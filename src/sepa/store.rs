//! Mandates in the database. A mandate is written under its customer's row, share-locked
//! (`customers::store::status_for_write`, which refuses a closed customer); a status change
//! is one conditional `UPDATE … WHERE status = 'active'`, so that of two concurrent changes
//! the second finds nothing to change; an amendment locks the mandate's row.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::*;
use crate::customers::CustomerStatus;
use crate::idempotency::{self, IdempotencyKey};
use crate::schema::{mandate_amendments, mandates};

/// Mandates not lapsed at `cutoff` ([`lapse_cutoff`]): last used after it or, never used,
/// signed after it. The one SQL form of the lapse rule, for every query that takes only
/// live mandates. (The lapse job states the complement itself: `NOT` of this is NULL, not
/// true, for a mandate never used and signed before the cutoff.)
#[diesel::dsl::auto_type]
pub(super) fn not_lapsed(cutoff: NaiveDate) -> _ {
    mandates::last_collected_on
        .gt(cutoff)
        .or(mandates::last_collected_on
            .is_null()
            .and(mandates::signed_on.gt(cutoff)))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mandates)]
struct MandateRow {
    id: Uuid,
    customer_id: Uuid,
    reference: String,
    signed_on: NaiveDate,
    status: MandateStatus,
    created_at: DateTime<Utc>,
    debtor_name: Option<String>,
    iban: Option<String>,
    bic: Option<String>,
    scheme: MandateScheme,
    last_collected_on: Option<NaiveDate>,
    status_changed_at: Option<DateTime<Utc>>,
    status_reason: Option<String>,
    payment_type: PaymentType,
    final_requested_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mandate_amendments)]
struct AmendmentRow {
    id: Uuid,
    mandate_id: Uuid,
    previous_iban: Option<String>,
    previous_bic: Option<String>,
    previous_debtor_name: Option<String>,
    bic_changed: bool,
    amended_on: NaiveDate,
    reported_in: Option<Uuid>,
}

/// Whether the customer holds a mandate its subscriptions can be collected under on `today`
/// (Paris): active (so complete: the database refuses an active mandate without debtor name
/// and IBAN), recurrent, not asked to end, and not unused for 36 months, whether or not the
/// lapse job has run since.
pub async fn has_active_mandate(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    today: NaiveDate,
) -> Result<bool, diesel::result::Error> {
    let cutoff = lapse_cutoff(today);
    diesel::select(diesel::dsl::exists(
        mandates::table
            .filter(mandates::customer_id.eq(customer))
            .filter(mandates::status.eq(MandateStatus::Active))
            .filter(mandates::payment_type.eq(PaymentType::Recurrent))
            .filter(mandates::final_requested_at.is_null())
            .filter(not_lapsed(cutoff)),
    ))
    .get_result(conn)
    .await
}

fn views(rows: Vec<MandateRow>, amendments: Vec<AmendmentRow>) -> Vec<MandateView> {
    rows.into_iter()
        .map(|r| MandateView {
            amendments: amendments
                .iter()
                .filter(|a| a.mandate_id == r.id)
                .map(|a| AmendmentView {
                    id: a.id,
                    amended_on: a.amended_on,
                    previous_iban: a.previous_iban.clone(),
                    previous_bic: a.previous_bic.clone(),
                    bic_changed: a.bic_changed,
                    previous_debtor_name: a.previous_debtor_name.clone(),
                    reported_in: a.reported_in,
                })
                .collect(),
            lapses_after: (r.status == MandateStatus::Active)
                .then(|| lapses_after(r.last_collected_on.unwrap_or(r.signed_on))),
            id: r.id,
            customer_id: r.customer_id,
            reference: r.reference,
            signed_on: r.signed_on,
            debtor_name: r.debtor_name,
            iban: r.iban,
            bic: r.bic,
            scheme: r.scheme,
            payment_type: r.payment_type,
            status: r.status,
            final_collection_requested_at: r.final_requested_at,
            status_reason: r.status_reason,
            status_changed_at: r.status_changed_at,
            last_collected_on: r.last_collected_on,
            created_at: r.created_at,
        })
        .collect()
}

async fn with_amendments(
    c: &mut AsyncPgConnection,
    rows: Vec<MandateRow>,
) -> Result<Vec<MandateView>, diesel::result::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let amendments = mandate_amendments::table
        .filter(mandate_amendments::mandate_id.eq_any(&ids))
        .order(mandate_amendments::id)
        .select(AmendmentRow::as_select())
        .load(c)
        .await?;
    Ok(views(rows, amendments))
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<MandateView>, diesel::result::Error> {
    let rows = mandates::table
        .filter(mandates::id.eq(id))
        .select(MandateRow::as_select())
        .load(conn)
        .await?;
    Ok(with_amendments(conn, rows).await?.pop())
}

/// The customer's mandates in the order recorded, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<MandateView>, diesel::result::Error> {
    let mut q = mandates::table
        .filter(mandates::customer_id.eq(customer))
        .order(mandates::id)
        .limit(limit)
        .select(MandateRow::as_select())
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(mandates::id.gt(a));
    }
    let rows = q.load(conn).await?;
    with_amendments(conn, rows).await
}

async fn writable_customer(c: &mut AsyncPgConnection, customer: Uuid) -> Result<(), SepaError> {
    match crate::customers::store::status_for_write(c, customer).await? {
        None => Err(SepaError::UnknownCustomer(customer)),
        Some(CustomerStatus::Closed) => Err(SepaError::CustomerClosed(customer)),
        Some(_) => Ok(()),
    }
}

/// Records the mandate `req` of `customer` at `now`; with `key`, a retry answers the first
/// (`true`). The reference is unique across mandates (409 otherwise).
pub async fn create(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    req: &NewMandate,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(MandateView, bool), SepaError> {
    let fields = req.validate(crate::calendar::paris_date(now))?;
    #[derive(serde::Serialize)]
    struct Asked<'a> {
        customer: Uuid,
        fields: &'a MandateFields,
    }
    let asked = Asked {
        customer,
        fields: &fields,
    };
    crate::retry_transaction!(conn, SepaError, |c| {
        let first = idempotency::replay::<_, SepaError>(c, key, "mandates.create", &asked, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        writable_customer(c, customer).await?;
        let id = Uuid::now_v7();
        let inserted = diesel::insert_into(mandates::table)
            .values((
                mandates::id.eq(id),
                mandates::customer_id.eq(customer),
                mandates::reference.eq(&fields.reference),
                mandates::signed_on.eq(fields.signed_on),
                mandates::status.eq(MandateStatus::Active),
                mandates::created_at.eq(now),
                mandates::debtor_name.eq(&fields.account.debtor_name),
                mandates::iban.eq(&fields.account.iban),
                mandates::bic.eq(&fields.account.bic),
                mandates::scheme.eq(fields.scheme),
                mandates::payment_type.eq(fields.payment_type),
            ))
            .on_conflict(mandates::reference)
            .do_nothing()
            .execute(c)
            .await?;
        if inserted == 0 {
            return Err(SepaError::DuplicateReference(fields.reference.clone()));
        }
        let view = get(c, id).await?.ok_or(SepaError::NotFound(id))?;
        idempotency::record(c, key, &view).await?;
        Ok((view, false))
    })
}

/// Revokes the mandate `id` at `now`. Revoking a revoked mandate changes nothing (its view
/// again); a lapsed one cannot be revoked.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<MandateView, SepaError> {
    let reason = reason.unwrap_or("revoked");
    let changed = diesel::update(
        mandates::table
            .filter(mandates::id.eq(id))
            .filter(mandates::status.eq(MandateStatus::Active)),
    )
    .set((
        mandates::status.eq(MandateStatus::Revoked),
        mandates::status_changed_at.eq(now),
        mandates::status_reason.eq(reason),
    ))
    .execute(conn)
    .await?;
    let view = get(conn, id).await?.ok_or(SepaError::NotFound(id))?;
    match view.status {
        MandateStatus::Lapsed if changed == 0 => Err(SepaError::WrongState(
            "mandate",
            id,
            "lapsed",
            "a lapsed mandate collects nothing already; record a new one if needed",
        )),
        _ => Ok(view),
    }
}

/// Asks the active recurrent mandate `id` at `now` to end after its next collection: the next
/// batch collects what it can under it, the last collection as FNAL, and submitting that
/// batch revokes it ([`super::store_batches::submit`]). Asking again changes nothing; a
/// one-off mandate (its only collection is its last) and one no longer active answer 409.
pub async fn end_after_next_collection(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<MandateView, SepaError> {
    let changed = diesel::update(
        mandates::table
            .filter(mandates::id.eq(id))
            .filter(mandates::status.eq(MandateStatus::Active))
            .filter(mandates::payment_type.eq(PaymentType::Recurrent))
            .filter(mandates::final_requested_at.is_null()),
    )
    .set((
        mandates::final_requested_at.eq(now),
        mandates::status_reason.eq(reason),
    ))
    .execute(conn)
    .await?;
    let view = get(conn, id).await?.ok_or(SepaError::NotFound(id))?;
    match (changed, view.status, view.payment_type) {
        (0, MandateStatus::Active, PaymentType::OneOff) => Err(SepaError::WrongState(
            "mandate",
            id,
            "one_off",
            "its only collection is its last: revoke it without after_final_collection",
        )),
        (0, MandateStatus::Revoked | MandateStatus::Lapsed, _) => Err(SepaError::WrongState(
            "mandate",
            id,
            view.status.as_str(),
            "it collects nothing any more",
        )),
        _ => Ok(view),
    }
}

/// Amends the mandate `id` at `now` (its IBAN, BIC or debtor name), keeping what it
/// replaced until a collection reports it. Only an active mandate is amended.
pub async fn amend(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    req: &MandateAmendmentRequest,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(MandateView, bool), SepaError> {
    crate::retry_transaction!(conn, SepaError, |c| {
        let asked = (id, req);
        let first = idempotency::replay::<_, SepaError>(c, key, "mandates.amend", &asked, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        let row: MandateRow = mandates::table
            .find(id)
            .select(MandateRow::as_select())
            .for_no_key_update()
            .first(c)
            .await
            .optional()?
            .ok_or(SepaError::NotFound(id))?;
        let (MandateStatus::Active, Some(debtor_name), Some(iban)) =
            (row.status, row.debtor_name, row.iban)
        else {
            return Err(SepaError::WrongState(
                "mandate",
                id,
                row.status.as_str(),
                "only an active mandate is amended",
            ));
        };
        let current = DebtorAccount {
            debtor_name,
            iban,
            bic: row.bic,
        };
        let amendment = req.amend(&current)?;
        diesel::insert_into(mandate_amendments::table)
            .values((
                mandate_amendments::id.eq(Uuid::now_v7()),
                mandate_amendments::mandate_id.eq(id),
                mandate_amendments::previous_iban.eq(&amendment.previous_iban),
                mandate_amendments::previous_bic.eq(&amendment.previous_bic),
                mandate_amendments::previous_debtor_name.eq(&amendment.previous_debtor_name),
                mandate_amendments::bic_changed.eq(amendment.bic_changed),
                mandate_amendments::amended_on.eq(crate::calendar::paris_date(now)),
                mandate_amendments::created_at.eq(now),
            ))
            .execute(c)
            .await?;
        diesel::update(mandates::table.find(id))
            .set((
                mandates::debtor_name.eq(&amendment.new.debtor_name),
                mandates::iban.eq(&amendment.new.iban),
                mandates::bic.eq(&amendment.new.bic),
            ))
            .execute(c)
            .await?;
        let view = get(c, id).await?.ok_or(SepaError::NotFound(id))?;
        idempotency::record(c, key, &view).await?;
        Ok((view, false))
    })
}

/// The `mandate-lapse` job: every active mandate unused for 36 months on `as_of`'s Paris
/// date lapses. Running it again changes nothing.
pub async fn lapse(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<u32, diesel::result::Error> {
    let cutoff = lapse_cutoff(crate::calendar::paris_date(as_of));
    let lapsed = diesel::update(
        mandates::table
            .filter(mandates::status.eq(MandateStatus::Active))
            .filter(
                mandates::last_collected_on
                    .le(cutoff)
                    .or(mandates::last_collected_on
                        .is_null()
                        .and(mandates::signed_on.le(cutoff))),
            ),
    )
    .set((
        mandates::status.eq(MandateStatus::Lapsed),
        mandates::status_changed_at.eq(as_of),
        mandates::status_reason.eq("no collection presented for 36 months"),
    ))
    .execute(conn)
    .await?;
    Ok(u32::try_from(lapsed).unwrap_or(u32::MAX))
}
