//! Interventions in the database: each state change is one conditional `UPDATE … WHERE
//! status = <from>`, so two concurrent changes never both apply.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{dispute_deadline, InterventionError, InterventionStatus, InterventionView, Sheet};
use crate::calendar::paris_date;
use crate::catalog;
use crate::charges::{self, ChargeSource, NewCharge};
use crate::schema::interventions;

#[derive(Queryable, Selectable)]
#[diesel(table_name = interventions)]
struct Row {
    id: Uuid,
    authorization_id: Uuid,
    customer_id: Uuid,
    offer_code: String,
    description: String,
    quantity: Decimal,
    unit_price: Decimal,
    sheet_at: DateTime<Utc>,
    dispute_deadline: DateTime<Utc>,
    status: InterventionStatus,
}

impl From<Row> for InterventionView {
    fn from(r: Row) -> Self {
        InterventionView {
            id: r.id,
            authorization_id: r.authorization_id,
            customer_id: r.customer_id,
            description: r.description,
            quantity: crate::money::DecimalString(r.quantity.normalize()),
            unit_price: crate::money::price(r.unit_price),
            amount: InterventionView::amount(r.quantity, r.unit_price),
            sheet_at: r.sheet_at,
            dispute_deadline: r.dispute_deadline,
            status: r.status,
        }
    }
}

/// Records `sheet` for the authorization's capture at `at`, inside the caller's transaction
/// (pipelined with the capture's other writes).
pub async fn insert_in_tx(
    mut conn: &AsyncPgConnection,
    sheet: &Sheet,
    authorization: Uuid,
    customer: Uuid,
    at: DateTime<Utc>,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(interventions::table)
        .values((
            interventions::id.eq(sheet.id),
            interventions::authorization_id.eq(authorization),
            interventions::customer_id.eq(customer),
            interventions::offer_code.eq(&sheet.offer_code),
            interventions::description.eq(&sheet.description),
            interventions::quantity.eq(sheet.quantity),
            interventions::unit_price.eq(sheet.unit_price),
            interventions::sheet_at.eq(at),
            interventions::dispute_deadline.eq(dispute_deadline(at)),
            interventions::status.eq(InterventionStatus::Pending),
        ))
        .execute(&mut conn)
        .await
        .map(drop)
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<InterventionView>, InterventionError> {
    Ok(interventions::table
        .find(id)
        .select(Row::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Into::into))
}

/// Interventions in id order after `after`, of one customer and in one status when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    customer: Option<Uuid>,
    status: Option<InterventionStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<InterventionView>, InterventionError> {
    let mut q = interventions::table
        .order(interventions::id)
        .limit(limit)
        .select(Row::as_select())
        .into_boxed();
    if let Some(c) = customer {
        q = q.filter(interventions::customer_id.eq(c));
    }
    if let Some(s) = status {
        q = q.filter(interventions::status.eq(s));
    }
    if let Some(a) = after {
        q = q.filter(interventions::id.gt(a));
    }
    Ok(q.load(conn).await?.into_iter().map(Into::into).collect())
}

/// The intervention an authorization's capture recorded, if any.
pub async fn of_authorization(
    conn: &mut AsyncPgConnection,
    authorization: Uuid,
) -> Result<Option<Uuid>, diesel::result::Error> {
    interventions::table
        .filter(interventions::authorization_id.eq(authorization))
        .select(interventions::id)
        .first(conn)
        .await
        .optional()
}

/// Why a conditional update changed nothing: the intervention is unknown, or in `state`.
async fn refused(conn: &mut AsyncPgConnection, id: Uuid, state: &'static str) -> InterventionError {
    match get(conn, id).await {
        Ok(Some(_)) => InterventionError::WrongState(id, state),
        Ok(None) => InterventionError::NotFound(id),
        Err(e) => e,
    }
}

/// The customer disputes the intervention sheet at `at`; accepted while it is pending and
/// its window is open.
pub async fn dispute(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<InterventionView, InterventionError> {
    let row: Option<Row> = diesel::update(
        interventions::table
            .find(id)
            .filter(interventions::status.eq(InterventionStatus::Pending))
            .filter(interventions::dispute_deadline.gt(at)),
    )
    .set((
        interventions::status.eq(InterventionStatus::Disputed),
        interventions::disputed_at.eq(at),
    ))
    .returning(Row::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match row {
        Some(row) => Ok(row.into()),
        None => Err(refused(conn, id, "not pending, or past its dispute window").await),
    }
}

/// Resolves a dispute: for the customer voids the intervention (never billed); against
/// the customer lets the release job charge it.
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    for_customer: bool,
    at: DateTime<Utc>,
) -> Result<InterventionView, InterventionError> {
    let row: Option<Row> = diesel::update(
        interventions::table
            .find(id)
            .filter(interventions::status.eq(InterventionStatus::Disputed)),
    )
    .set((
        interventions::status.eq(if for_customer {
            InterventionStatus::Voided
        } else {
            InterventionStatus::Upheld
        }),
        interventions::resolved_at.eq(at),
    ))
    .returning(Row::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match row {
        Some(row) => Ok(row.into()),
        None => Err(refused(conn, id, "not disputed").await),
    }
}

/// `intervention-release` at `as_of`: undisputed interventions whose window has closed, and
/// those resolved against the customer, become charges. Idempotent. Returns the charges.
pub async fn release(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u32, InterventionError> {
    let releasable = || {
        interventions::status
            .eq(InterventionStatus::Upheld)
            .or(interventions::status
                .eq(InterventionStatus::Pending)
                .and(interventions::dispute_deadline.le(as_of)))
    };
    let due: Vec<Uuid> = interventions::table
        .filter(releasable())
        .select(interventions::id)
        .load(conn)
        .await?;
    let mut released = 0;
    for id in due {
        let done = crate::retry_transaction!(conn, InterventionError, |c| {
            // the state change first: a concurrent run, or a late dispute, finds it taken
            let Some(row) = diesel::update(interventions::table.find(id).filter(releasable()))
                .set(interventions::status.eq(InterventionStatus::Released))
                .returning(Row::as_returning())
                .get_result::<Row>(c)
                .await
                .optional()?
            else {
                return Ok(false);
            };
            let offer = catalog::store::get(c, &row.offer_code)
                .await?
                .ok_or_else(|| InterventionError::UnknownOffer(row.offer_code.clone()))?;
            charges::insert(
                c,
                &NewCharge {
                    service_start: Some(paris_date(row.sheet_at)),
                    idempotency_key: Some(format!("intervention:{id}")),
                    ..NewCharge::of_offer(
                        row.customer_id,
                        &offer,
                        ChargeSource::Intervention,
                        row.description.clone(),
                        row.quantity,
                        row.unit_price,
                    )
                },
                now,
            )
            .await?;
            Ok(true)
        })?;
        released += u32::from(done);
    }
    Ok(released)
}
