//! Credit lots: granted by packs, bought, allocated to holds, listed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::catalog;
use crate::catalog::PriceBasis;
use crate::charges::{self, ChargeSource, NewCharge};
use crate::idempotency::{self, IdempotencyKey};
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, NewTransaction, Posting};
use crate::money::{price, round_cents, Amount, Unit};
use crate::schema::{balances, credit_lots, invoices, subscriptions};
use crate::subscriptions::schedule;
use crate::wallets::lots::LotSale;

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
    pub(super) invoice_id: Option<Uuid>,
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
    let lot_account = account(conn, lot.customer, CustomerAccount::CreditLot(id)).await?;
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
    let issued = account(conn, lot.customer, CustomerAccount::CreditIssued).await?;
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
/// unit-credit price, invoiced at once in the same transaction (the invoice posts the sale:
/// receivable 411 / deferred revenue 487 / VAT), and a lot at that price excl. VAT expiring
/// 12 months on. A replay answers the first lot and its invoice, and issues nothing.
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
        require_open_customer(c, customer).await?;
        let sold_at = active_offers(c, customer, now)
            .await?
            .into_iter()
            .filter(|(_, o)| o.entitlements.unit_credit_purchase)
            .map(|(_, o)| o.entitlements.unit_credit_offer.ok_or(o.code))
            .min()
            .ok_or(WalletError::ServicePlusRequired)?
            .map_err(|pack| {
                WalletError::NotFound(format!("the unit-credit offer of pack `{pack}`"))
            })?;
        let (offer, unit_price) = price_on(c, &sold_at, paris_date(now)).await?;
        // a lot recognises its unit price excl. VAT: what its invoice line's net is made of
        let unit_price_ht = match offer.price_basis {
            PriceBasis::Ht => unit_price,
            PriceBasis::Ttc => {
                return Err(WalletError::Invalid(format!(
                    "offer `{}` is priced incl. VAT: unit credits are sold at a price excl. VAT",
                    offer.code
                )))
            }
        };
        let id = grant_lot(
            c,
            NewLot {
                customer,
                origin: LotOrigin::Purchase,
                subscription: None,
                credits,
                unit_price: unit_price_ht,
                granted_at: now,
            },
        )
        .await?;
        let charge = charges::insert_returning_id(
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
        .await?
        .ok_or_else(|| WalletError::NotFound(format!("the charge of credit lot {id}")))?;
        let (invoice, net) = invoice_at_once(c, customer, charge, now).await?;
        if net
            != (LotSale {
                granted: credits.value(),
                unit_price: unit_price_ht,
            })
            .value()
        {
            return Err(WalletError::Invalid(format!(
                "lot {id}: its invoice line's net {net} is not its sale value"
            )));
        }
        diesel::update(credit_lots::table.find(id))
            .set(credit_lots::invoice_id.eq(invoice.id))
            .execute(c)
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
    let invoiced: Vec<Uuid> = rows.iter().filter_map(|l| l.invoice_id).collect();
    let numbers: HashMap<Uuid, String> = invoices::table
        .filter(invoices::id.eq_any(&invoiced))
        .select((invoices::id, invoices::number))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for lot in rows {
        #[derive(QueryableByName)]
        struct Moves {
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            consumed: Decimal,
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            expired: Decimal,
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            credited: Decimal,
        }
        let moves: Moves = diesel::sql_query(
            "SELECT coalesce(sum(p.amount) FILTER (WHERE t.kind IN ('credits.use', 'hold.capture')), 0) AS consumed,
                    coalesce(sum(p.amount) FILTER (WHERE t.kind = 'credits.expire'), 0) AS expired,
                    coalesce(sum(p.amount) FILTER (WHERE t.kind = 'credits.credited'), 0) AS credited
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
            credited: two(moves.credited),
            held: two(balance
                .as_ref()
                .map(|b| b.pending_debits.0)
                .unwrap_or_default()),
            remaining: two(balance.map(|b| b.available.0).unwrap_or_default()),
            unit_price: price(lot.unit_price),
            granted_at: lot.granted_at,
            expires_at: lot.expires_at,
            invoice_id: lot.invoice_id,
            invoice_number: lot.invoice_id.and_then(|i| numbers.get(&i).cloned()),
        });
    }
    Ok(out)
}
