//! Holds: two-phase reservations, placed, captured (possibly for less), voided or
//! expired, each write one call of `ledger_hold` or `ledger_settle`.

use super::*;

#[derive(Queryable, Selectable)]
#[diesel(table_name = holds)]
struct HoldRow {
    id: Uuid,
    debit_account_id: Uuid,
    credit_account_id: Uuid,
    unit: String,
    amount: Decimal,
    status: String,
    expires_at: DateTime<Utc>,
    captured_amount: Option<Decimal>,
    capture_transaction_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

impl HoldRow {
    fn status(&self) -> HoldStatus {
        HoldStatus::parse(&self.status)
            .unwrap_or_else(|| panic!("hold status unknown to this build: {}", self.status))
    }

    fn view(&self) -> HoldView {
        let unit = parse_unit(&self.unit);
        let scaled = |d: Decimal| unit.show(d);
        HoldView {
            id: HoldId(self.id),
            debit_account_id: AccountId(self.debit_account_id),
            credit_account_id: AccountId(self.credit_account_id),
            amount: scaled(self.amount),
            unit,
            status: self.status(),
            expires_at: self.expires_at,
            captured_amount: self.captured_amount.map(scaled),
            capture_transaction_id: self.capture_transaction_id.map(TransactionId),
            created_at: self.created_at,
            resolved_at: self.resolved_at,
        }
    }
}

#[derive(QueryableByName)]
struct HoldPlaced {
    #[diesel(sql_type = SqlUuid)]
    hold_id: Uuid,
    #[diesel(sql_type = Bool)]
    replayed: bool,
}

/// Places holds (each reserves its amount, pending) in one function call, inside the
/// caller's database transaction (through `&AsyncPgConnection`, so that it can go out
/// along with other statements). Each is idempotent on its key: a replay returns the
/// first hold's id (`true`), another request under the same key is refused. Returns the
/// holds' ids in the order given.
pub async fn hold_in_tx(
    mut conn: &AsyncPgConnection,
    new: &[(HoldId, NewHold)],
    now: DateTime<Utc>,
) -> Result<Vec<(HoldId, bool)>, LedgerError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let placed: Vec<HoldPlaced> = diesel::sql_query(
        "SELECT hold_id, replayed FROM ledger_hold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind::<Array<SqlUuid>, _>(new.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        new.iter()
            .map(|(_, h)| h.idempotency_key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Bytea>, _>(
        new.iter()
            .map(|(_, h)| h.request_hash())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<SqlUuid>, _>(new.iter().map(|(_, h)| h.debit.0).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(new.iter().map(|(_, h)| h.credit.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        new.iter()
            .map(|(_, h)| h.amount.unit().code())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Numeric>, _>(
        new.iter()
            .map(|(_, h)| h.amount.value())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(new.iter().map(|(_, h)| h.expires_at).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(
        new.iter()
            .map(|(_, h)| serde_json::Value::Object(h.metadata.clone()))
            .collect::<Vec<_>>(),
    )
    .bind::<Timestamptz, _>(now)
    .load(&mut conn)
    .await
    .map_err(refusal)?;
    Ok(placed
        .into_iter()
        .map(|p| (HoldId(p.hold_id), p.replayed))
        .collect())
}

/// Reserves the hold's amount (pending) at `now`, in a database transaction of its own.
/// Idempotent on its key: a replay returns the first hold (`true`).
pub async fn hold(
    conn: &mut AsyncPgConnection,
    new: &NewHold,
    now: DateTime<Utc>,
) -> Result<(HoldView, bool), LedgerError> {
    let shared: &AsyncPgConnection = conn;
    let one = [(HoldId(Uuid::now_v7()), new.clone())];
    let placed = retried(|| hold_in_tx(shared, &one, now)).await?;
    let (id, replayed) = placed[0];
    let view = get_hold(conn, id)
        .await?
        .ok_or(LedgerError::UnknownHold(id))?;
    Ok((view, replayed))
}

/// The holds `ids`, in that order (unknown ids are left out).
pub async fn get_holds(
    mut conn: &AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<HoldView>, LedgerError> {
    let rows: Vec<HoldRow> = holds::table
        .filter(holds::id.eq_any(ids))
        .select(HoldRow::as_select())
        .load(&mut conn)
        .await?;
    let mut views: Vec<HoldView> = rows.iter().map(HoldRow::view).collect();
    views.sort_by_key(|h| ids.iter().position(|id| *id == h.id.0));
    Ok(views)
}

pub async fn get_hold(
    conn: &mut AsyncPgConnection,
    id: HoldId,
) -> Result<Option<HoldView>, LedgerError> {
    let row: Option<HoldRow> = holds::table
        .find(id.0)
        .select(HoldRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|r| r.view()))
}

/// How a pending hold is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Posted for this amount (the whole hold when `None`), the rest released.
    Capture(Option<Amount>),
    /// Released: the work was not done.
    Void,
    /// Released: past its expiry.
    Expire,
}

#[derive(QueryableByName)]
struct Settled {
    #[diesel(sql_type = SqlUuid)]
    hold_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    transaction_id: Option<Uuid>,
}

/// Resolves pending holds at `now` in one function call, inside the caller's database
/// transaction: each locked, then captured (posted in a transaction `capture:{hold}` of
/// its own) or released, each balance row moved once. A hold that is no longer pending is
/// refused ([`LedgerError::HoldNotPending`]), or left out when `skip_resolved`; so is one
/// past its expiry, unless expiring. Returns each resolved hold with its capture.
pub async fn settle_in_tx(
    mut conn: &AsyncPgConnection,
    settlements: &[(HoldId, Settlement)],
    now: DateTime<Utc>,
    skip_resolved: bool,
) -> Result<Vec<(HoldId, Option<TransactionId>)>, LedgerError> {
    if settlements.is_empty() {
        return Ok(Vec::new());
    }
    let status = |s: &Settlement| match s {
        Settlement::Capture(_) => HoldStatus::Captured.as_str(),
        Settlement::Void => HoldStatus::Voided.as_str(),
        Settlement::Expire => HoldStatus::Expired.as_str(),
    };
    let amount = |s: &Settlement| match s {
        Settlement::Capture(a) => *a,
        _ => None,
    };
    let settled: Vec<Settled> = diesel::sql_query(
        "SELECT hold_id, transaction_id FROM ledger_settle($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind::<Array<SqlUuid>, _>(settlements.iter().map(|(h, _)| h.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        settlements
            .iter()
            .map(|(_, s)| status(s))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Numeric>>, _>(
        settlements
            .iter()
            .map(|(_, s)| amount(s).map(|a| a.value()))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        settlements
            .iter()
            .map(|(_, s)| amount(s).map(|a| a.unit().code()))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<SqlUuid>, _>(
        settlements
            .iter()
            .map(|_| Uuid::now_v7())
            .collect::<Vec<_>>(),
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Bool, _>(skip_resolved)
    .load(&mut conn)
    .await
    .map_err(|e| match refusal(e) {
        LedgerError::Database(DieselError::DatabaseError(_, info))
            if info.constraint_name() == Some("gl_capture_exceeds_hold") =>
        {
            // DETAIL: "<hold id> <amount held>"
            let mut detail = info.details().unwrap_or_default().split(' ');
            let hold = HoldId(
                detail
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or_default(),
            );
            let held = detail
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_default();
            let requested = settlements
                .iter()
                .find(|(h, _)| *h == hold)
                .and_then(|(_, s)| amount(s))
                .map(|a| a.value())
                .unwrap_or_default();
            LedgerError::CaptureExceedsHold {
                hold,
                requested,
                held,
            }
        }
        LedgerError::UnknownHold(_) if settlements.len() == 1 => {
            LedgerError::UnknownHold(settlements[0].0)
        }
        other => other,
    })?;
    Ok(settled
        .into_iter()
        .map(|s| (HoldId(s.hold_id), s.transaction_id.map(TransactionId)))
        .collect())
}

/// Resolves one hold in a database transaction of its own and returns it as it now is.
async fn settle_one(
    conn: &mut AsyncPgConnection,
    id: HoldId,
    settlement: Settlement,
    now: DateTime<Utc>,
) -> Result<(HoldView, Option<TransactionId>), LedgerError> {
    let shared: &AsyncPgConnection = conn;
    let one = [(id, settlement)];
    let settled = retried(|| settle_in_tx(shared, &one, now, false)).await?;
    let view = get_hold(conn, id)
        .await?
        .ok_or(LedgerError::UnknownHold(id))?;
    Ok((view, <[_]>::first(&settled).and_then(|(_, tx)| *tx)))
}

/// Captures a pending hold for `amount` (the whole hold when `None`): the captured amount
/// is posted and the rest released, in one function call.
pub async fn capture(
    conn: &mut AsyncPgConnection,
    id: HoldId,
    amount: Option<Amount>,
    now: DateTime<Utc>,
) -> Result<(HoldView, Posted), LedgerError> {
    let (view, tx) = settle_one(conn, id, Settlement::Capture(amount), now).await?;
    let id = tx.ok_or(LedgerError::UnknownHold(id))?;
    Ok((
        view,
        Posted {
            id,
            replayed: false,
        },
    ))
}

/// Voids a pending hold: its pending amount is released, nothing is posted.
pub async fn void(
    conn: &mut AsyncPgConnection,
    id: HoldId,
    now: DateTime<Utc>,
) -> Result<HoldView, LedgerError> {
    Ok(settle_one(conn, id, Settlement::Void, now).await?.0)
}

/// How many due holds one call of the expiry releases.
const EXPIRY_BATCH: i64 = 500;

/// Marks every pending hold whose expiry has passed at `now` as expired, releasing its
/// pending amount, a batch per function call. Returns how many expired. Idempotent.
pub async fn expire_holds(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<usize, LedgerError> {
    let mut expired = 0;
    loop {
        let due: Vec<Uuid> = holds::table
            .filter(holds::status.eq(HoldStatus::Pending.as_str()))
            .filter(holds::expires_at.le(now))
            .order(holds::id)
            .limit(EXPIRY_BATCH)
            .select(holds::id)
            .load(conn)
            .await?;
        let batch: Vec<(HoldId, Settlement)> = due
            .iter()
            .map(|id| (HoldId(*id), Settlement::Expire))
            .collect();
        let shared: &AsyncPgConnection = conn;
        // captured or voided meanwhile: left out
        expired += retried(|| settle_in_tx(shared, &batch, now, true))
            .await?
            .len();
        if (due.len() as i64) < EXPIRY_BATCH {
            return Ok(expired);
        }
    }
}
