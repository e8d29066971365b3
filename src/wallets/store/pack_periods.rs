//! Assistance+ appointments: pack periods, quota, overage and its close.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::catalog::{self, Offer};
use crate::charges::{self, ChargeSource, NewCharge};
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, BalanceView, LedgerError, NewTransaction, Posting};
use crate::money::Unit;
use crate::schema::{appointment_period_closes, appointments, subscriptions};
use crate::subscriptions::schedule::{twelve_month_period, twelve_month_period_at};

/// An Assistance+ pack's period, from the ledger.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AppointmentPeriod {
    #[schema(value_type = String, format = Uuid)]
    pub subscription_id: Uuid,
    pub period_index: u32,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub quota: i32,
    pub used: i32,
    pub overage: i32,
}

pub(super) async fn pack(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<(SubFacts, Offer), WalletError> {
    let sub: SubFacts = subscriptions::table
        .find(id)
        .select(SubFacts::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| WalletError::NotFound(format!("subscription {id}")))?;
    let offer = catalog::store::get(conn, &sub.offer_code)
        .await?
        .ok_or_else(|| WalletError::NotFound(format!("offer `{}`", sub.offer_code)))?;
    Ok((sub, offer))
}

/// An Assistance+ pack's period, its quota granted: where appointments are counted.
pub(crate) struct PackPeriod {
    pub pack: Uuid,
    pub customer: Uuid,
    pub period: u32,
    issued: AccountId,
    /// The period's quota account: its available balance is what is left (holds count).
    pub quota: AccountId,
    pub left: Decimal,
}

/// The period of the pack `pack_id` at `at` (the pack locked, live at `at`), its quota
/// granted on first use.
pub(crate) async fn pack_period(
    c: &mut AsyncPgConnection,
    pack_id: Uuid,
    at: DateTime<Utc>,
) -> Result<PackPeriod, WalletError> {
    let (sub, offer) = pack(c, pack_id).await?;
    let SubFacts {
        customer_id: customer,
        start_date: start,
        ends_at,
        status,
        ..
    } = sub;
    let Some(quota) = offer.entitlements.appointment_quota else {
        return Err(WalletError::Invalid(format!(
            "subscription {pack_id} has no appointment quota"
        )));
    };
    let live = status == "active" && paris_midnight(start) <= at && ends_at.is_none_or(|e| e > at);
    if !live {
        return Err(WalletError::Invalid(format!(
            "subscription {pack_id} is not active at {at}"
        )));
    }
    let current = twelve_month_period_at(start, paris_date(at));
    let period = current.index;
    let quota_of = CustomerAccount::AppointmentQuota {
        pack: pack_id,
        period,
    };
    let issued = account(
        c,
        customer,
        CustomerAccount::AppointmentIssued { pack: pack_id },
    )
    .await?;
    let quota_acct = account(c, customer, quota_of).await?;
    let balance = ledger::get_account(c, quota_acct)
        .await?
        .map(|a| a.balance)
        .ok_or_else(|| WalletError::NotFound(format!("account {}", quota_of.code())))?;
    let mut left = balance.available.0;
    if balance.posted_credits.0.is_zero() {
        let n = amount(Decimal::from(quota), Unit::Appointment)?;
        let grant = NewTransaction::new(
            format!("appointments:quota:{pack_id}:{period}"),
            "appointments.quota",
            vec![Posting::debit(issued, n), Posting::credit(quota_acct, n)],
        )?
        .effective_at(paris_midnight(current.start));
        ledger::post_in_tx(c, &grant).await?;
        left += n.value();
    }
    Ok(PackPeriod {
        pack: pack_id,
        customer,
        period,
        issued,
        quota: quota_acct,
        left,
    })
}

impl PackPeriod {
    /// Where an appointment within the quota goes (quota → used).
    pub(crate) async fn used_account(
        &self,
        conn: &AsyncPgConnection,
    ) -> Result<AccountId, LedgerError> {
        let used = CustomerAccount::AppointmentUsed {
            pack: self.pack,
            period: self.period,
        };
        account(conn, self.customer, used).await
    }

    /// Records an appointment taken at `at` under `key`. Beyond the quota (`overage`) it is
    /// posted here (issued → overage); within it the caller has moved one from the quota
    /// to the used account by capturing a hold.
    pub(crate) async fn record(
        &self,
        c: &mut AsyncPgConnection,
        overage: bool,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), WalletError> {
        if overage {
            let overage = CustomerAccount::AppointmentOverage {
                pack: self.pack,
                period: self.period,
            };
            let over = account(c, self.customer, overage).await?;
            let one = amount(Decimal::ONE, Unit::Appointment)?;
            let tx = NewTransaction::new(
                format!("appointments:book:{key}"),
                "appointments.book",
                vec![Posting::debit(self.issued, one), Posting::credit(over, one)],
            )?
            .effective_at(at);
            ledger::post_in_tx(c, &tx).await?;
        }
        diesel::insert_into(appointments::table)
            .values((
                appointments::id.eq(Uuid::now_v7()),
                appointments::subscription_id.eq(self.pack),
                appointments::period_index.eq(self.period as i32),
                appointments::overage.eq(overage),
                appointments::booked_at.eq(at),
                appointments::idempotency_key.eq(key),
            ))
            .execute(c)
            .await?;
        Ok(())
    }
}

pub(super) async fn period_figures(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    pack_id: Uuid,
    period: u32,
) -> Result<(i32, i32), WalletError> {
    let pack = pack_id;
    let used = CustomerAccount::AppointmentUsed { pack, period };
    let overage = CustomerAccount::AppointmentOverage { pack, period };
    let count =
        |b: Option<BalanceView>| i32::try_from(whole(b.map(|b| b.posted.0))).unwrap_or(i32::MAX);
    Ok((
        count(balance_of(conn, customer, used).await?),
        count(balance_of(conn, customer, overage).await?),
    ))
}

/// What `assistance-period-close` did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct PeriodCloseReport {
    /// Assistance+ periods closed, each once.
    pub periods_closed: u32,
    /// Overage charges created (a period without overage is closed without one).
    pub charges_created: u32,
    /// Packs that could not be closed; the next run takes them up again.
    pub failed: Vec<crate::jobs::Failure>,
}

/// `assistance-period-close` at `as_of`: each Assistance+ period that has ended by then (or
/// whose pack has ended) is closed once, its overage charged at the tariff of the pack's
/// overage offer in force on the closing date. One pack's failure (its overage offer has no
/// price, say) does not stop the others.
pub async fn close_appointment_periods(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PeriodCloseReport, WalletError> {
    let packs: Vec<SubFacts> = subscriptions::table
        .filter(subscriptions::anchor_date.is_not_null())
        .select(SubFacts::as_select())
        .load(conn)
        .await?;
    let mut report = PeriodCloseReport::default();
    for pack in packs {
        let Some(offer) = catalog::store::get(conn, &pack.offer_code).await? else {
            continue;
        };
        if offer.entitlements.appointment_quota.is_none() {
            continue;
        }
        if let Err(e) = close_pack_periods(conn, &pack, &offer, as_of, now, &mut report).await {
            tracing::warn!(pack = %pack.id, error = %e, "assistance period not closed");
            report.failed.push(crate::jobs::Failure {
                id: pack.id,
                error: e.to_string(),
            });
        }
    }
    Ok(report)
}

/// Closes the pack's ended periods, oldest first, each in its own transaction.
async fn close_pack_periods(
    conn: &mut AsyncPgConnection,
    pack: &SubFacts,
    offer: &Offer,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut PeriodCloseReport,
) -> Result<(), WalletError> {
    let (id, customer, ends_at) = (pack.id, pack.customer_id, pack.ends_at);
    let overage_offer = offer.entitlements.overage_offer.as_deref().ok_or_else(|| {
        WalletError::NotFound(format!("the overage offer of pack `{}`", offer.code))
    })?;
    let mut period = 0u32;
    loop {
        let dates = twelve_month_period(pack.start_date, period);
        let period_start = paris_midnight(dates.start);
        let natural_end = paris_midnight(dates.end);
        let close_at = match ends_at {
            Some(e) if e < natural_end => e,
            _ => natural_end,
        };
        if close_at > as_of || period_start >= close_at {
            return Ok(());
        }
        let (_, overage) = period_figures(conn, customer, id, period).await?;
        let closed = crate::retry_transaction!(conn, WalletError, |c| {
            let inserted = diesel::insert_into(appointment_period_closes::table)
                .values((
                    appointment_period_closes::subscription_id.eq(id),
                    appointment_period_closes::period_index.eq(period as i32),
                    appointment_period_closes::closed_at.eq(close_at),
                    appointment_period_closes::overage.eq(overage),
                ))
                .on_conflict_do_nothing()
                .execute(c)
                .await?;
            if inserted == 0 {
                return Ok(None);
            }
            if overage == 0 {
                return Ok(Some(false));
            }
            let close_date = paris_date(close_at);
            let (tariff, unit_price) = price_on(c, overage_offer, close_date).await?;
            charges::insert(
                c,
                &NewCharge {
                    subscription_id: Some(id),
                    period_index: Some(period as i32),
                    service_start: Some(dates.start),
                    service_end: Some(close_date.max(dates.start.succ_opt().unwrap_or(close_date))),
                    ..NewCharge::of_offer(
                        customer,
                        &tariff,
                        ChargeSource::AssistanceOverage,
                        format!("{} × {overage}, period from {}", tariff.name, dates.start),
                        Decimal::from(overage),
                        unit_price,
                    )
                },
                now,
            )
            .await?;
            Ok(Some(true))
        })?;
        if let Some(charged) = closed {
            report.periods_closed += 1;
            report.charges_created += u32::from(charged);
        }
        if ends_at.is_some_and(|e| e <= natural_end) {
            return Ok(());
        }
        period += 1;
    }
}
