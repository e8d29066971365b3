//! Credit lots: granted by packs, bought, allocated to holds, listed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::catalog;
use crate::charges::{self, ChargeSource, NewCharge};
use crate::idempotency::{self, IdempotencyKey};
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, NewTransaction, Posting};
use crate::money::{price, round_cents, Amount, Unit};
use crate::schema::{balances, credit_lots, subscriptions};
use crate::subscriptions::schedule;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = credit_lots)]
pub(super) struct LotRow {
    pub(super) id: Uuid,
    pub(super) customer_id: Uuid,
    pub(super) account_id: Uuid,
    pub(super) origin: String,
    pub(super) subscription_id: Option<Uuid>,
    pub(super) granted: Decimal,
    pub(super) unit_price: Decimal,
    pub(super) granted_at: DateTime<Utc>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) expired_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub(super) struct NewLot {
    customer: Uuid,
    origin: LotOrigin,
    subscription: Option<(Uuid, i32)>,
    credits: Amount,
    unit_price: Decimal,
    granted_at: DateTime<Utc>,
}

/// Creates a lot and credits it; `AlreadyGranted` when it exists (same pack period or key),
/// which rolls back the caller's transaction and the lot account opened here.
pub(super) async fn grant_lot(
    conn: &mut AsyncPgConnection,
    lot: NewLot,
) -> Result<Uuid, WalletError> {
    let id = Uuid::now_v7();
    let lot_account = holder(
        conn,
        lot.customer,
        &format!("CREDIT-LOT:{id}"),
        Unit::Credit,
    )
    .await?;
    let inserted = diesel::insert_into(credit_lots::table)
        .values((
            credit_lots::id.eq(id),
            credit_lots::customer_id.eq(lot.customer),
            credit_lots::account_id.eq(lot_account.0),
            credit_lots::origin.eq(match lot.origin {
                LotOrigin::PackGrant => "pack_grant",
                LotOrigin::Purchase => "purchase",
            }),
            credit_lots::subscription_id.eq(lot.subscription.map(|s| s.0)),
            credit_lots::term_index.eq(lot.subscription.map(|s| s.1)),
            credit_lots::granted.eq(lot.credits.value()),
            credit_lots::unit_price.eq(lot.unit_price),
            credit_lots::granted_at.eq(lot.granted_at),
            credit_lots::expires_at.eq(lot_expiry(lot.granted_at)),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 0 {
        return Err(WalletError::AlreadyGranted);
    }
    let issued = issuer(conn, lot.customer, "CREDIT-ISSUED", Unit::Credit).await?;
    let tx = NewTransaction::new(
        format!("credits:grant:{id}"),
        "credits.grant",
        vec![
            Posting::debit(issued, lot.credits),
            Posting::credit(lot_account, lot.credits),
        ],
    )?
    .effective_at(lot.granted_at);
    ledger::post_in_tx(conn, &tx).await?;
    Ok(id)
}

/// Buys unit credits at `now`, only while an active subscription allows it: a charge at the
/// unit-credit price, and a lot at that price expiring 12 months on.
pub async fn buy_credits(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: Amount,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(CreditLotView, bool), WalletError> {
    #[derive(serde::Serialize)]
    struct Request {
        customer: Uuid,
        credits: Decimal,
    }
    let request = Request {
        customer,
        credits: credits.value(),
    };
    crate::retry_transaction!(conn, WalletError, |c| {
        let first = idempotency::replay::<_, WalletError>(c, key, "credits.buy", &request, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        require_customer(c, customer).await?;
        if !active_offers(c, customer, now)
            .await?
            .iter()
            .any(|(_, o)| o.entitlements.unit_credit_purchase)
        {
            return Err(WalletError::ServicePlusRequired);
        }
        let (offer, unit_price) = price_on(c, UNIT_CREDIT_OFFER, paris_date(now)).await?;
        let id = grant_lot(
            c,
            NewLot {
                customer,
                origin: LotOrigin::Purchase,
                subscription: None,
                credits,
                unit_price,
                granted_at: now,
            },
        )
        .await?;
        charges::insert(
            c,
            &NewCharge {
                idempotency_key: Some(format!("credits:{id}")),
                ..NewCharge::of_offer(
                    customer,
                    &offer,
                    ChargeSource::CreditPurchase,
                    format!("{} × {}", offer.name, credits.value()),
                    credits.value(),
                    unit_price,
                )
            },
            now,
        )
        .await?;
        let lot = lots(c, customer)
            .await?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(|| WalletError::NotFound(format!("lot {id}")))?;
        idempotency::record(c, key, &lot).await?;
        Ok((lot, false))
    })
}

/// Grants the included credits of every Service+ pack at the start of each 12-month
/// period of the pack begun by `as_of`: anchored on the pack's own start date, whatever
/// its parent's term length or billing period, and only while the pack is alive (a period
/// starting at or after its end grants nothing). One lot per period, the period's index
/// as the lot's `term_index`; each lot expires 12 months after its grant. A period
/// granted before costs nothing and opens no account. Returns how many lots were granted.
pub async fn grant_pack_credits(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<u32, WalletError> {
    let packs: Vec<SubFacts> = subscriptions::table
        .filter(subscriptions::anchor_date.is_not_null())
        .select(SubFacts::as_select())
        .load(conn)
        .await?;
    let mut granted = 0;
    for SubFacts {
        id,
        customer_id: customer,
        offer_code: code,
        start_date,
        ends_at,
        ..
    } in packs
    {
        let Some(offer) = catalog::store::get(conn, &code).await? else {
            continue;
        };
        let Some(per_period) = offer.entitlements.credits_per_term else {
            continue;
        };
        let until = schedule::alive_until(ends_at, as_of);
        let done: HashSet<i32> = credit_lots::table
            .filter(credit_lots::subscription_id.eq(id))
            .select(credit_lots::term_index)
            .load::<Option<i32>>(conn)
            .await?
            .into_iter()
            .flatten()
            .collect();
        for period in schedule::twelve_month_periods(start_date, until) {
            let index = period.index as i32;
            if done.contains(&index) {
                continue;
            }
            let lot = NewLot {
                customer,
                origin: LotOrigin::PackGrant,
                subscription: Some((id, index)),
                credits: amount(per_period.0, Unit::Credit)?,
                unit_price: Decimal::ZERO,
                granted_at: paris_midnight(period.start),
            };
            match crate::retry_transaction!(conn, WalletError, |c| {
                grant_lot(c, lot.clone()).await
            }) {
                Ok(_) => granted += 1,
                // granted meanwhile by a concurrent run
                Err(WalletError::AlreadyGranted) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(granted)
}

/// Which lots `credits` come from at `at`: the customer's live lots in consumption order
/// (earliest expiry, then oldest), each for at most what it has free (holds excluded), as
/// `(lot account, credits, unit price)`. Locks those lots, which serialises consumers of
/// one customer. `Insufficient` when they cannot cover it.
pub(crate) async fn allocate_credits(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: Amount,
    at: DateTime<Utc>,
) -> Result<Vec<(AccountId, Decimal, Decimal)>, WalletError> {
    let lots = || {
        credit_lots::table
            .filter(credit_lots::customer_id.eq(customer))
            .filter(credit_lots::expires_at.gt(at))
            .filter(credit_lots::granted_at.le(at))
            .filter(credit_lots::expired_at.is_null())
    };
    // the lots first (the service may not lock balance rows: only the ledger functions
    // do), then what each has free in a statement of its own, which sees what the
    // consumer that held the lock before us committed
    lots()
        .select(credit_lots::id)
        .order(credit_lots::id)
        .for_update()
        .load::<Uuid>(conn)
        .await?;
    let live: Vec<(Uuid, Decimal, Decimal)> = lots()
        .inner_join(balances::table.on(balances::account_id.eq(credit_lots::account_id)))
        .order((
            credit_lots::expires_at,
            credit_lots::granted_at,
            credit_lots::id,
        ))
        .select((
            credit_lots::account_id,
            credit_lots::unit_price,
            balances::posted_credits - balances::posted_debits - balances::pending_debits,
        ))
        .load(conn)
        .await?;
    let mut left = credits.value();
    let mut parts = Vec::new();
    for (account, unit_price, free) in live {
        if left.is_zero() {
            break;
        }
        let take = free.min(left);
        if take > Decimal::ZERO {
            parts.push((AccountId(account), take, unit_price));
            left -= take;
        }
    }
    if !left.is_zero() {
        return Err(WalletError::Insufficient(format!(
            "{} credits",
            credits.value()
        )));
    }
    Ok(parts)
}

/// What a lot was sold for, and how its revenue is recognised to the cent (DOMAIN.md,
/// "Service credits"): each movement off the lot (a use, an expiry) at the unit price,
/// rounded on its own, except the one that empties it, which takes the rest of the sale
/// value, so that a lot recognises in all exactly what it was sold for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotSale {
    /// Credits granted or bought.
    pub granted: Decimal,
    /// EUR excl. VAT per credit (0 for credits included in a pack).
    pub unit_price: Decimal,
}

impl LotSale {
    /// What the lot was sold for, net of VAT: `granted × unit_price` to the cent.
    pub fn value(&self) -> Decimal {
        round_cents(self.granted * self.unit_price)
    }

    /// The EUR a movement of `credits` off the lot recognises, `left` being the credits on
    /// the lot before it (held ones included) and `earlier` the credits of the lot's
    /// earlier movements. Only the movement that empties the lot reads `earlier`: it takes
    /// the sale value less what those recognised, which can be below the movement's own
    /// rounding, above it, or (after many small movements rounded up) below zero.
    pub fn movement_eur(&self, credits: Decimal, left: Decimal, earlier: &[Decimal]) -> Decimal {
        let eur = |c: &Decimal| round_cents(c * self.unit_price);
        if credits == left {
            self.value() - earlier.iter().map(eur).sum::<Decimal>()
        } else {
            eur(&credits)
        }
    }
}

impl LotRow {
    pub(super) fn sale(&self) -> LotSale {
        LotSale {
            granted: self.granted,
            unit_price: self.unit_price,
        }
    }
}

/// The EUR a movement of `credits` off `lot` recognises ([`LotSale::movement_eur`]), `left`
/// being the credits on it before. The caller holds the lot's row lock, so that no other
/// movement comes between what is read here and what it posts.
pub(super) async fn movement_eur(
    conn: &mut AsyncPgConnection,
    lot: &LotRow,
    left: Decimal,
    credits: Decimal,
) -> Result<Decimal, WalletError> {
    #[derive(QueryableByName)]
    struct Movement {
        #[diesel(sql_type = diesel::sql_types::Numeric)]
        amount: Decimal,
    }
    let sale = lot.sale();
    if credits != left || sale.unit_price.is_zero() {
        return Ok(sale.movement_eur(credits, left, &[]));
    }
    // the last movement: what the earlier ones recognised, each at its own rounding
    let earlier: Vec<Movement> = diesel::sql_query(
        "SELECT p.amount FROM postings p JOIN transactions t ON t.id = p.transaction_id
         WHERE p.account_id = $1 AND p.side = 'debit'
           AND t.kind IN ('credits.use', 'hold.capture', 'credits.expire')",
    )
    .bind::<diesel::sql_types::Uuid, _>(lot.account_id)
    .load(conn)
    .await?;
    let earlier: Vec<Decimal> = earlier.into_iter().map(|m| m.amount).collect();
    Ok(sale.movement_eur(credits, left, &earlier))
}

/// Lots locked for a movement, each with the credits on it (held ones included).
pub(crate) struct LockedLots(Vec<(LotRow, Decimal)>);

/// Locks the lots of the lot accounts `accounts`, in lot id order (lots before balances,
/// like every writer of a lot), then reads what each has. Accounts of no lot are left out.
pub(crate) async fn lock_lots(
    conn: &mut AsyncPgConnection,
    accounts: &[Uuid],
) -> Result<LockedLots, WalletError> {
    let lots: Vec<LotRow> = credit_lots::table
        .filter(credit_lots::account_id.eq_any(accounts))
        .order(credit_lots::id)
        .select(LotRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    // in a statement of its own, which sees what the holder of the lock before us posted
    let on_lots: Vec<(Uuid, Decimal)> = balances::table
        .filter(balances::account_id.eq_any(accounts))
        .select((
            balances::account_id,
            balances::posted_credits - balances::posted_debits,
        ))
        .load(conn)
        .await?;
    Ok(LockedLots(
        lots.into_iter()
            .map(|lot| {
                let left = on_lots
                    .iter()
                    .find(|(a, _)| *a == lot.account_id)
                    .map_or(Decimal::ZERO, |(_, c)| *c);
                (lot, left)
            })
            .collect(),
    ))
}

impl LockedLots {
    /// What using `takes` (lot account, credits) recognises, as the customer's postings:
    /// deferred revenue (487) to revenue (706), the other way round when the remainders
    /// taken by lots emptied here come to less than zero. None when it comes to zero.
    pub(crate) async fn use_postings(
        &mut self,
        conn: &mut AsyncPgConnection,
        customer: Uuid,
        takes: &[(AccountId, Decimal)],
    ) -> Result<Vec<Posting>, WalletError> {
        let mut eur = Decimal::ZERO;
        for (account, credits) in takes {
            let Some((lot, left)) = self.0.iter_mut().find(|(l, _)| l.account_id == account.0)
            else {
                return Err(WalletError::NotFound(format!(
                    "the lot of account {account}"
                )));
            };
            eur += movement_eur(conn, lot, *left, *credits).await?;
            *left -= *credits;
        }
        let mut postings = revenue_postings(conn, customer, eur.abs()).await?;
        if eur < Decimal::ZERO {
            for p in &mut postings {
                p.side = p.side.opposite();
            }
        }
        Ok(postings)
    }
}

/// A customer's lots, earliest expiry first, with what became of each (from the ledger).
pub async fn lots(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<Vec<CreditLotView>, WalletError> {
    let rows: Vec<LotRow> = credit_lots::table
        .filter(credit_lots::customer_id.eq(customer))
        .order((
            credit_lots::expires_at,
            credit_lots::granted_at,
            credit_lots::id,
        ))
        .select(LotRow::as_select())
        .load(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for lot in rows {
        #[derive(QueryableByName)]
        struct Moves {
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            consumed: Decimal,
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            expired: Decimal,
        }
        let moves: Moves = diesel::sql_query(
            "SELECT coalesce(sum(p.amount) FILTER (WHERE t.kind IN ('credits.use', 'hold.capture')), 0) AS consumed,
                    coalesce(sum(p.amount) FILTER (WHERE t.kind = 'credits.expire'), 0) AS expired
             FROM postings p JOIN transactions t ON t.id = p.transaction_id
             WHERE p.account_id = $1 AND p.side = 'debit'",
        )
        .bind::<diesel::sql_types::Uuid, _>(lot.account_id)
        .get_result(conn)
        .await?;
        let balance = ledger::get_account(conn, AccountId(lot.account_id))
            .await?
            .map(|a| a.balance);
        let two = |d: Decimal| crate::money::DecimalString(round_cents(d));
        out.push(CreditLotView {
            id: lot.id,
            origin: if lot.origin == "purchase" {
                LotOrigin::Purchase
            } else {
                LotOrigin::PackGrant
            },
            subscription_id: lot.subscription_id,
            granted: two(lot.granted),
            consumed: two(moves.consumed),
            expired: two(moves.expired),
            held: two(balance
                .as_ref()
                .map(|b| b.pending_debits.0)
                .unwrap_or_default()),
            remaining: two(balance.map(|b| b.available.0).unwrap_or_default()),
            unit_price: price(lot.unit_price),
            granted_at: lot.granted_at,
            expires_at: lot.expires_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::LotSale;

    /// EUR of each movement in turn, from a full lot: what the store does, without a store.
    fn recognise(sale: LotSale, movements: &[Decimal]) -> Vec<Decimal> {
        let mut left = sale.granted;
        let mut out = Vec::new();
        for (n, credits) in movements.iter().enumerate() {
            out.push(sale.movement_eur(*credits, left, &movements[..n]));
            left -= credits;
        }
        out
    }

    #[test]
    fn the_last_movement_takes_the_rest_of_the_sale_value() {
        // the lot: 8.01 credits at 82.2027 are sold 658.44; used 1.90 (156.19), the
        // expiry of 6.11 recognised 502.26 on its own (658.45 in all), 502.25 now
        let sale = LotSale {
            granted: dec!(8.01),
            unit_price: dec!(82.2027),
        };
        assert_eq!(sale.value(), dec!(658.44));
        assert_eq!(
            recognise(sale, &[dec!(1.90), dec!(6.11)]),
            [dec!(156.19), dec!(502.25)]
        );
    }

    #[test]
    fn uses_then_expiry_then_a_release_add_up_to_the_sale() {
        // 10 credits at 52.25 = 522.50: two uses of 3.10 (161.975 → 161.98 each), 0.80
        // expire while 3.00 are held (41.80), 2.10 of the hold used (109.725 → 109.73), the
        // 0.90 it releases expire last: 47.01, not 47.03
        let sale = LotSale {
            granted: dec!(10),
            unit_price: dec!(52.25),
        };
        let eur = recognise(
            sale,
            &[dec!(3.10), dec!(3.10), dec!(0.80), dec!(2.10), dec!(0.90)],
        );
        assert_eq!(
            eur,
            [
                dec!(161.98),
                dec!(161.98),
                dec!(41.80),
                dec!(109.73),
                dec!(47.01)
            ]
        );
        assert_eq!(eur.iter().sum::<Decimal>(), dec!(522.50));
    }

    #[test]
    fn without_drift_the_last_movement_is_its_own_rounding() {
        let sale = LotSale {
            granted: dec!(10),
            unit_price: dec!(80.00),
        };
        assert_eq!(
            recognise(sale, &[dec!(4), dec!(6)]),
            [dec!(320.00), dec!(480.00)]
        );
        assert_eq!(recognise(sale, &[dec!(10)]), [dec!(800.00)], "all at once");
    }

    #[test]
    fn many_small_movements_rounded_up_leave_a_negative_remainder() {
        // 1 credit at 0.15 = 0.15; nine uses of 0.10 recognise 0.02 each (0.015 rounded
        // half away from zero), 0.18 in all: the last one gives 0.03 back
        let sale = LotSale {
            granted: dec!(1),
            unit_price: dec!(0.15),
        };
        let eur = recognise(sale, &[dec!(0.10); 10]);
        assert_eq!(eur[..9], [dec!(0.02); 9]);
        assert_eq!(eur[9], dec!(-0.03));
        assert_eq!(eur.iter().sum::<Decimal>(), dec!(0.15));
    }

    #[test]
    fn pack_credits_recognise_nothing() {
        let sale = LotSale {
            granted: dec!(20),
            unit_price: Decimal::ZERO,
        };
        assert_eq!(sale.value(), dec!(0.00));
        assert_eq!(
            recognise(sale, &[dec!(3), dec!(17)]),
            [dec!(0.00), dec!(0.00)]
        );
    }

    proptest! {
        /// However a lot is used and expired, it recognises what it was sold for.
        #[test]
        fn a_lot_recognises_its_sale_value(
            price in 0i64..2_000_000,
            parts in proptest::collection::vec(1i64..5_000, 1..12),
        ) {
            let movements: Vec<Decimal> = parts.iter().map(|c| Decimal::new(*c, 2)).collect();
            let sale = LotSale {
                granted: movements.iter().sum(),
                unit_price: Decimal::new(price, 4),
            };
            let eur = recognise(sale, &movements);
            prop_assert_eq!(eur.iter().sum::<Decimal>(), sale.value());
            for (m, e) in movements.iter().zip(&eur).take(movements.len() - 1) {
                prop_assert_eq!(*e, crate::money::round_cents(m * sale.unit_price));
            }
        }
    }
}
