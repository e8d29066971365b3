use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::idempotency::{self, IdempotencyKey, KeyReused};

use super::{Address, ClosedRefusal, CustomerFields, CustomerPatch, CustomerStatus, CustomerView};
use crate::schema::customers;

#[derive(Queryable, Selectable)]
#[diesel(table_name = customers)]
struct CustomerRow {
    id: Uuid,
    legal_name: String,
    siren: String,
    siret: Option<String>,
    vat_number: Option<String>,
    billing_email: String,
    street_number: Option<String>,
    street: String,
    postcode: String,
    town: String,
    country: String,
    status: CustomerStatus,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl CustomerRow {
    fn view(self) -> CustomerView {
        CustomerView {
            id: self.id,
            legal_name: self.legal_name,
            siren: self.siren,
            siret: self.siret,
            vat_number: self.vat_number,
            billing_email: self.billing_email,
            address: Address {
                street_number: self.street_number,
                street: self.street,
                postcode: self.postcode,
                town: self.town,
                country: self.country,
            },
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The identity and address columns, written alike on creation and on update (a `None`
/// clears the column).
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = customers, treat_none_as_null = true)]
struct IdentityColumns<'a> {
    legal_name: &'a str,
    siren: &'a str,
    siret: Option<&'a str>,
    vat_number: Option<&'a str>,
    billing_email: &'a str,
    street_number: Option<&'a str>,
    street: &'a str,
    postcode: &'a str,
    town: &'a str,
    country: &'a str,
}

impl<'a> From<&'a CustomerFields> for IdentityColumns<'a> {
    fn from(f: &'a CustomerFields) -> Self {
        IdentityColumns {
            legal_name: &f.legal_name,
            siren: &f.siren,
            siret: f.siret.as_deref(),
            vat_number: f.vat_number.as_deref(),
            billing_email: &f.billing_email,
            street_number: f.address.street_number.as_deref(),
            street: &f.address.street,
            postcode: &f.address.postcode,
            town: &f.address.town,
            country: &f.address.country,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    #[error("the idempotency key was already used for a different customer")]
    IdempotencyConflict,
    #[error("customer {0} does not exist")]
    NotFound(Uuid),
    #[error("invalid customer fields")]
    Invalid(Vec<crate::error::FieldError>),
    #[error("customer {0} is closed: its account is read-only until an admin reopens it")]
    Closed(Uuid),
    #[error("only an admin key may reopen a closed customer")]
    ReopenNotAllowed,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl From<KeyReused> for CustomerError {
    fn from(_: KeyReused) -> Self {
        CustomerError::IdempotencyConflict
    }
}

impl crate::db::Retryable for CustomerError {
    fn is_retryable(&self) -> bool {
        matches!(self, CustomerError::Database(e) if crate::db::is_retryable(e))
    }
}

/// Creates a customer; with a key, a replay returns the first one (`true` = replayed).
pub async fn create(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    f: &CustomerFields,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(CustomerView, bool), CustomerError> {
    crate::retry_transaction!(conn, CustomerError, |c| {
        if let Some(first) =
            idempotency::replay::<_, CustomerError>(c, key, "customers.create", f, now).await?
        {
            return Ok((first, true));
        }
        let row: CustomerRow = diesel::insert_into(customers::table)
            .values((
                customers::id.eq(id),
                IdentityColumns::from(f),
                customers::created_at.eq(now),
                customers::updated_at.eq(now),
            ))
            .returning(CustomerRow::as_returning())
            .get_result(c)
            .await?;
        let view = row.view();
        idempotency::record(c, key, &view).await?;
        Ok((view, false))
    })
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<CustomerView>, diesel::result::Error> {
    let row = customers::table
        .find(id)
        .select(CustomerRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(CustomerRow::view))
}

/// Applies `patch` to the customer `id` and checks the result, in one transaction under
/// the customer's row lock: two concurrent patches of different fields both hold. A closed
/// customer takes only a patch that reopens it, and only when `may_reopen`.
pub async fn patch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    patch: &CustomerPatch,
    may_reopen: bool,
    now: DateTime<Utc>,
) -> Result<CustomerView, CustomerError> {
    crate::retry_transaction!(conn, CustomerError, |c| {
        let current = customers::table
            .find(id)
            .select(CustomerRow::as_select())
            .for_update()
            .first(c)
            .await
            .optional()?
            .ok_or(CustomerError::NotFound(id))?
            .view();
        patch
            .allowed_on(current.status, may_reopen)
            .map_err(|refusal| match refusal {
                ClosedRefusal::Closed => CustomerError::Closed(id),
                ClosedRefusal::ReopenNotAllowed => CustomerError::ReopenNotAllowed,
            })?;
        let fields = patch
            .apply(current)
            .validate()
            .map_err(CustomerError::Invalid)?;
        update(c, id, &fields, patch.status, now)
            .await?
            .ok_or(CustomerError::NotFound(id))
    })
}

/// The status of the customer `id` for a write on its behalf, read under a share lock
/// held until the caller's transaction ends: closing the customer (a patch, which locks
/// the row for update) waits for that write, and the write waits for a closing under way,
/// so no write lands on a customer closed meanwhile. `None`: no such customer.
pub async fn status_for_write(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<CustomerStatus>, diesel::result::Error> {
    customers::table
        .find(id)
        .select(customers::status)
        .for_share()
        .first(conn)
        .await
        .optional()
}

/// [`status_for_write`] for a write that will also change the customer's own rows, such as
/// an invoice issued in the same transaction: the row is locked `FOR NO KEY UPDATE` (as
/// `invoicing::store::issue_in_tx` locks it) from the start, never share-locked then
/// upgraded, which would deadlock two such writes of one customer.
pub async fn status_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<CustomerStatus>, diesel::result::Error> {
    customers::table
        .find(id)
        .select(customers::status)
        .for_no_key_update()
        .first(conn)
        .await
        .optional()
}

/// Customers in id order after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CustomerView>, diesel::result::Error> {
    let mut q = customers::table
        .select(CustomerRow::as_select())
        .order(customers::id)
        .limit(limit)
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(customers::id.gt(a));
    }
    Ok(q.load(conn)
        .await?
        .into_iter()
        .map(CustomerRow::view)
        .collect())
}

/// Replaces the identity and address, and sets the status when given.
async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    f: &CustomerFields,
    status: Option<CustomerStatus>,
    now: DateTime<Utc>,
) -> Result<Option<CustomerView>, diesel::result::Error> {
    let row = diesel::update(customers::table.find(id))
        .set((
            IdentityColumns::from(f),
            status.map(|s| customers::status.eq(s)),
            customers::updated_at.eq(now),
        ))
        .returning(CustomerRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    Ok(row.map(CustomerRow::view))
}
