//! After the decision: capture (possibly for less), void, and the hold-expiry job.

use super::*;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What was actually done, for a capture: minutes of work (hourly-priced) or units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// Minutes worked (hourly-priced interventions: billed per started increment of the
    /// offer's `increment_minutes`, 15 by default).
    pub minutes: Option<i64>,
    /// Units consumed (credits, a ticket, service units); at most what was held.
    pub units: Option<DecimalString>,
}

/// Captures an open authorization at `at`: consumes at most what was held (the rest is
/// released); a chargeable one becomes an intervention held for the dispute window.
/// The authorization is read (locked) with its holds, then every write goes out at once.
pub async fn capture(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    what: Capture,
    at: DateTime<Utc>,
) -> Result<AuthorizationView, AuthorizationError> {
    crate::retry_transaction!(conn, AuthorizationError, |c| {
        let row = load(c, id, true).await?;
        match row.status {
            AuthorizationStatus::Open => {}
            AuthorizationStatus::Denied => {
                return Err(AuthorizationError::WrongState(id, "denied"))
            }
            AuthorizationStatus::Captured => {
                return Err(AuthorizationError::WrongState(id, "already captured"))
            }
            AuthorizationStatus::Voided => {
                return Err(AuthorizationError::WrongState(id, "voided"))
            }
            AuthorizationStatus::Expired => {
                return Err(AuthorizationError::WrongState(id, "expired"))
            }
        }
        if row.expires_at.is_some_and(|e| e <= at) {
            return Err(AuthorizationError::WrongState(id, "expired"));
        }
        let units = what.units.map(|u| u.0);
        if units.is_some_and(|u| u < Decimal::ZERO)
            || what.minutes.is_some_and(|m| !(0..=24 * 60).contains(&m))
        {
            return Err(AuthorizationError::Invalid(
                "units must be 0 or more, minutes 0 to 1440".into(),
            ));
        }
        let plan = plan_capture(c, &row, what, at).await?;
        let mut shared: &AsyncPgConnection = c;
        // every hold in one call: captured for what was taken, or released
        let settlements: Vec<(HoldId, Settlement)> = plan
            .holds
            .iter()
            .map(|(hold, take)| match take {
                Some(a) => (hold.id, Settlement::Capture(Some(*a))),
                None => (hold.id, Settlement::Void),
            })
            .collect();
        let settle = async {
            ledger::settle_in_tx(c, &settlements, at, false).await?;
            Ok::<_, AuthorizationError>(())
        };
        let revenue = async {
            if let Some(tx) = &plan.revenue {
                ledger::post_in_tx(c, tx).await?;
            }
            Ok::<_, AuthorizationError>(())
        };
        let sheet = async {
            if let Some(sheet) = &plan.intervention {
                interventions::store::insert_in_tx(c, sheet, id, row.customer_id, at).await?;
            }
            Ok::<_, AuthorizationError>(())
        };
        let update = diesel::update(authorizations::table.find(id))
            .set((
                authorizations::status.eq(AuthorizationStatus::Captured),
                authorizations::captured_units.eq(plan.captured),
                authorizations::resolved_at.eq(at),
            ))
            .returning(Row::as_returning())
            .get_result::<Row>(&mut shared);
        let (_, _, _, updated) = futures_util::try_join!(settle, revenue, sheet, async {
            Ok::<_, AuthorizationError>(update.await?)
        },)?;
        if let Some((period, overage)) = &plan.appointment {
            period
                .record(c, *overage, &format!("authz:{id}"), at)
                .await?;
        }
        // credits released on a lot that expired meanwhile expire at once
        let released: Vec<Uuid> = plan
            .holds
            .iter()
            .filter(|(hold, take)| {
                hold.unit == Unit::Credit && take.is_none_or(|t| t.value() < hold.amount.0)
            })
            .map(|(hold, _)| hold.debit_account_id.0)
            .collect();
        wallets::expire_released_in_tx(c, &released, at).await?;
        Ok(updated.view(plan.intervention.map(|i| i.id)))
    })
}

/// What a capture writes: each hold captured (for so much) or released, the revenue the
/// credits used earn, the intervention sheet, the appointment taken.
struct CapturePlan {
    captured: Decimal,
    holds: Vec<(HoldView, Option<Amount>)>,
    revenue: Option<crate::ledger::NewTransaction>,
    intervention: Option<interventions::Sheet>,
    /// The pack period an appointment is recorded in, and whether it is overage.
    appointment: Option<(wallets::PackPeriod, bool)>,
}

/// Works out a capture of the open authorization `row` (reading its holds).
async fn plan_capture(
    conn: &mut AsyncPgConnection,
    row: &Row,
    what: Capture,
    at: DateTime<Utc>,
) -> Result<CapturePlan, AuthorizationError> {
    let id = row.id;
    let units = what.units.map(|u| u.0);
    let mut plan = CapturePlan {
        captured: units.unwrap_or(Decimal::ONE),
        holds: Vec::new(),
        revenue: None,
        intervention: None,
        appointment: None,
    };
    match row.funding {
        Some(funding @ (Funding::Ticket | Funding::Quota | Funding::Overage)) => {
            if plan.captured > Decimal::ONE {
                return Err(AuthorizationError::Invalid(
                    "units: at most 1 (one ticket or one appointment), 0 for none".into(),
                ));
            }
            let used = !plan.captured.is_zero();
            if funding != Funding::Ticket && used {
                let pack = row
                    .subscription_id
                    .ok_or_else(|| AuthorizationError::Invalid("no pack".into()))?;
                // the period the authorization was decided in, which its hold is on; the
                // pack is locked before any balance, as when authorizing (no deadlock)
                let period = wallets::pack_period(conn, pack, row.created_at).await?;
                plan.appointment = Some((period, funding == Funding::Overage));
            }
            if funding != Funding::Overage {
                let shared: &AsyncPgConnection = conn;
                let holds = async {
                    Ok::<_, AuthorizationError>(ledger::get_holds(shared, &row.holds()).await?)
                };
                // a ticket used recognises its share of its purchase's sale: one statement,
                // sent with the holds' (no round trip of its own)
                let revenue = async {
                    match funding == Funding::Ticket && used {
                        true => Ok(wallets::use_ticket(shared, row.customer_id).await?),
                        false => Ok(Vec::new()),
                    }
                };
                let (holds, revenue) = futures_util::try_join!(holds, revenue)?;
                if !revenue.is_empty() {
                    plan.revenue = Some(
                        crate::ledger::NewTransaction::new(
                            format!("authz:{id}:revenue"),
                            "tickets.use",
                            revenue,
                        )?
                        .effective_at(at),
                    );
                }
                let hold = holds
                    .into_iter()
                    .next()
                    .ok_or_else(|| AuthorizationError::Invalid("no hold".into()))?;
                let unit = hold.unit;
                let take = match used {
                    true => Some(amount_of(Decimal::ONE, unit)?),
                    false => None,
                };
                plan.holds.push((hold, take));
            }
        }
        Some(Funding::Credits) => {
            let held = row.credits.unwrap_or_default();
            plan.captured = units.unwrap_or(held);
            if plan.captured > held {
                return Err(AuthorizationError::Invalid(format!(
                    "units: at most the {held} credits held"
                )));
            }
            let held_lots = ledger::get_holds(conn, &row.holds()).await?;
            // the lots before their balances (the lock order), so that each movement off a
            // lot knows whether it is the last one: that one takes the rest of its revenue
            let accounts: Vec<Uuid> = held_lots.iter().map(|h| h.debit_account_id.0).collect();
            let mut lots = wallets::lock_lots(conn, &accounts).await?;
            let mut left = plan.captured;
            let mut takes = Vec::new();
            for hold in held_lots {
                let take = hold.amount.0.min(left);
                left -= take;
                if take.is_zero() {
                    plan.holds.push((hold, None));
                    continue;
                }
                takes.push((hold.debit_account_id, take));
                plan.holds
                    .push((hold, Some(amount_of(take, Unit::Credit)?)));
            }
            let postings = lots.use_postings(conn, row.customer_id, &takes).await?;
            if !postings.is_empty() {
                plan.revenue = Some(
                    crate::ledger::NewTransaction::new(
                        format!("authz:{id}:revenue"),
                        "credits.use",
                        postings,
                    )?
                    .effective_at(at),
                );
            }
        }
        Some(Funding::Chargeable) => {
            let price = row.price.unwrap_or_default();
            // chargeable decisions name the offer they are priced at
            let offer_code = row.offer_code.clone().ok_or_else(|| {
                AuthorizationError::Invalid(format!("authorization {id} names no offer"))
            })?;
            let (quantity, unit_price, description) = if row.hourly {
                let minutes = what.minutes.ok_or_else(|| {
                    AuthorizationError::Invalid("minutes: the time worked is required".into())
                })?;
                // per started increment of the offer's (15 minutes when it names none)
                let step = catalog::store::get(conn, &offer_code)
                    .await?
                    .and_then(|o| o.increment_minutes)
                    .map_or(DEFAULT_INCREMENT_MINUTES, i64::from);
                let increments = (minutes + step - 1) / step;
                plan.captured = Decimal::from(minutes);
                (
                    Decimal::from(increments),
                    (price * Decimal::from(step) / Decimal::from(60)).round_dp(4),
                    format!("Intervention, {minutes} min ({increments} × {step} min)"),
                )
            } else {
                let n = plan.captured;
                (n, price, format!("Service `{offer_code}` × {n}"))
            };
            if quantity > Decimal::ZERO {
                plan.intervention = Some(interventions::Sheet {
                    id: Uuid::now_v7(),
                    offer_code,
                    description,
                    quantity,
                    unit_price,
                });
            }
        }
        Some(Funding::Included) | None => {}
    }
    Ok(plan)
}

/// Voids an open authorization: its holds are released.
pub async fn void(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<AuthorizationView, AuthorizationError> {
    crate::retry_transaction!(conn, AuthorizationError, |c| {
        let row = load(c, id, true).await?;
        if row.status != AuthorizationStatus::Open {
            return Err(AuthorizationError::WrongState(id, "not open"));
        }
        // credit lots are locked before holds and balances, as every writer of a lot does
        let lots: Vec<Uuid> = if row.funding == Some(Funding::Credits) {
            let lots: Vec<Uuid> = ledger::get_holds(c, &row.holds())
                .await?
                .into_iter()
                .map(|h| h.debit_account_id.0)
                .collect();
            wallets::lock_lots(c, &lots).await?;
            lots
        } else {
            Vec::new()
        };
        // holds already resolved (expired meanwhile) are left as they are
        let voids: Vec<(HoldId, Settlement)> = row
            .holds()
            .into_iter()
            .map(|h| (HoldId(h), Settlement::Void))
            .collect();
        ledger::settle_in_tx(c, &voids, at, true).await?;
        // credits released on a lot that expired meanwhile expire at once
        wallets::expire_released_in_tx(c, &lots, at).await?;
        diesel::update(authorizations::table.find(id))
            .set((
                authorizations::status.eq(AuthorizationStatus::Voided),
                authorizations::resolved_at.eq(at),
            ))
            .execute(c)
            .await?;
        Ok(())
    })?;
    view(conn, id).await
}

/// `hold-expiry` at `as_of`: open authorizations past their hold's expiry are expired and
/// every such hold released. Returns the holds expired.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<u32, AuthorizationError> {
    diesel::update(
        authorizations::table
            .filter(authorizations::status.eq(AuthorizationStatus::Open))
            .filter(authorizations::expires_at.le(as_of)),
    )
    .set((
        authorizations::status.eq(AuthorizationStatus::Expired),
        authorizations::resolved_at.eq(as_of),
    ))
    .execute(conn)
    .await?;
    let expired = ledger::expire_holds(conn, as_of).await?;
    // credits the expired holds released on lots that expired meanwhile expire at once
    wallets::expire_released(conn, as_of).await?;
    Ok(expired as u32)
}
