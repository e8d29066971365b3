//! The chart of accounts, written once: every account the domain posts to is named here,
//! with its code, unit, normal side and overdraft rule. Domain code names an account by a
//! variant, never by a code string; SQL functions receive account ids (or, for the
//! authorization snapshot that finds a customer's accounts, the codes given here).

use uuid::Uuid;

use super::store::NewAccount;
use super::{AccountId, Side};
use crate::money::Unit;

/// Accounts of the platform, opened by the first migration with fixed ids (French chart
/// of accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// 512 Bank.
    Bank,
    /// 5112 Direct debits in transit.
    DirectDebitsInTransit,
    /// 471 Suspense (manual adjustments).
    Suspense,
    /// 706 Services revenue.
    Revenue,
    /// 7088 Breakage revenue (expired credits).
    Breakage,
    /// 44571 VAT collected, as a whole: invoices post to the customers' 44571
    /// sub-accounts ([`CustomerAccount::VatCollected`]); this one holds what was posted
    /// before they existed.
    VatCollected,
}

impl Platform {
    pub const fn code(self) -> &'static str {
        match self {
            Platform::Bank => "512",
            Platform::DirectDebitsInTransit => "5112",
            Platform::Suspense => "471",
            Platform::Revenue => "706",
            Platform::Breakage => "7088",
            Platform::VatCollected => "44571",
        }
    }

    /// The id the first migration gave it: the code's digits as the last hex digits.
    pub const fn id(self) -> AccountId {
        let digits: u128 = match self {
            Platform::Bank => 0x512,
            Platform::DirectDebitsInTransit => 0x5112,
            Platform::Suspense => 0x471,
            Platform::Revenue => 0x706,
            Platform::Breakage => 0x7088,
            Platform::VatCollected => 0x44571,
        };
        AccountId(Uuid::from_u128(
            0x0000_0000_0000_4000_8000_0000_0000_0000 | digits,
        ))
    }
}

/// A customer's own account. Balances of one customer live only in that customer's
/// accounts, so that nothing on the hot path locks a row other customers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomerAccount {
    /// 411 Receivable (EUR): what the customer's open invoices still ask.
    Receivable,
    /// 4191 Customer credit balance (EUR): paid beyond what was invoiced, or credited on a
    /// paid invoice; applied to the next invoices or refunded, never below zero.
    CreditBalance,
    /// 487 Deferred revenue (EUR): tickets and credits sold, not yet used.
    DeferredRevenue,
    /// 706 Services revenue, the customer's sub-account (EUR).
    Revenue,
    /// 44571 VAT collected on the customer's invoices, its sub-account (EUR): one row per
    /// customer, so that invoices of different customers never wait on a shared balance.
    VatCollected,
    /// Where the customer's tickets come from.
    TicketIssued,
    /// Bought, invoice unpaid.
    TicketPending,
    /// Usable tickets.
    TicketWallet,
    TicketUsed,
    /// Where the customer's service credits come from.
    CreditIssued,
    /// One lot of service credits.
    CreditLot(Uuid),
    CreditUsed,
    CreditExpired,
    /// Where a pack's appointments come from.
    AppointmentIssued {
        pack: Uuid,
    },
    /// Appointments of a pack's 12-month period still included.
    AppointmentQuota {
        pack: Uuid,
        period: u32,
    },
    AppointmentUsed {
        pack: Uuid,
        period: u32,
    },
    AppointmentOverage {
        pack: Uuid,
        period: u32,
    },
}

impl CustomerAccount {
    pub fn code(self) -> String {
        use CustomerAccount::*;
        match self {
            Receivable => "411".into(),
            CreditBalance => "4191".into(),
            DeferredRevenue => "487".into(),
            Revenue => "706".into(),
            VatCollected => "44571".into(),
            TicketIssued => "TICKET-ISSUED".into(),
            TicketPending => "TICKET-PENDING".into(),
            TicketWallet => "TICKET-WALLET".into(),
            TicketUsed => "TICKET-USED".into(),
            CreditIssued => "CREDIT-ISSUED".into(),
            CreditLot(lot) => format!("CREDIT-LOT:{lot}"),
            CreditUsed => "CREDIT-USED".into(),
            CreditExpired => "CREDIT-EXPIRED".into(),
            AppointmentIssued { pack } => format!("APPT-ISSUED:{pack}"),
            AppointmentQuota { pack, period } => format!("APPT-QUOTA:{pack}:{period}"),
            AppointmentUsed { pack, period } => format!("APPT-USED:{pack}:{period}"),
            AppointmentOverage { pack, period } => format!("APPT-OVERAGE:{pack}:{period}"),
        }
    }

    pub fn unit(self) -> Unit {
        use CustomerAccount::*;
        match self {
            Receivable | CreditBalance | DeferredRevenue | Revenue | VatCollected => Unit::Eur,
            TicketIssued | TicketPending | TicketWallet | TicketUsed => Unit::Ticket,
            CreditIssued | CreditLot(_) | CreditUsed | CreditExpired => Unit::Credit,
            AppointmentIssued { .. }
            | AppointmentQuota { .. }
            | AppointmentUsed { .. }
            | AppointmentOverage { .. } => Unit::Appointment,
        }
    }

    /// Issuers and receivables are debit-normal (an issuer goes below zero as it issues);
    /// everything held or earned is credit-normal.
    pub fn normal_side(self) -> Side {
        use CustomerAccount::*;
        match self {
            Receivable | TicketIssued | CreditIssued | AppointmentIssued { .. } => Side::Debit,
            _ => Side::Credit,
        }
    }

    /// What a customer can spend may never go below zero, nor deferred revenue: every
    /// sale is posted to it (by the purchase's invoice) before any use recognises it.
    pub fn no_overdraft(self) -> bool {
        use CustomerAccount::*;
        matches!(
            self,
            CreditBalance
                | DeferredRevenue
                | TicketPending
                | TicketWallet
                | CreditLot(_)
                | AppointmentQuota { .. }
        )
    }

    /// How to open it for `customer`.
    pub fn new_account(self, customer: Uuid) -> NewAccount {
        NewAccount {
            code: self.code(),
            name: self.code(),
            unit: self.unit(),
            customer_id: Some(customer),
            normal_side: self.normal_side(),
            no_overdraft: self.no_overdraft(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_ids_are_those_of_the_first_migration() {
        assert_eq!(
            Platform::Breakage.id().0.to_string(),
            "00000000-0000-4000-8000-000000007088"
        );
        assert_eq!(
            Platform::VatCollected.id().0.to_string(),
            "00000000-0000-4000-8000-000000044571"
        );
        let migration = include_str!("../../migrations/2026-11-22-000001_ledger_core/up.sql");
        for p in [
            Platform::Bank,
            Platform::DirectDebitsInTransit,
            Platform::Suspense,
            Platform::Revenue,
            Platform::Breakage,
            Platform::VatCollected,
        ] {
            let row = format!("('{}', '{}',", p.id(), p.code());
            assert!(migration.contains(&row), "{row} not in the first migration");
        }
    }

    #[test]
    fn what_a_customer_spends_cannot_be_overdrawn() {
        let pack = Uuid::nil();
        assert!(CustomerAccount::TicketWallet.no_overdraft());
        assert!(CustomerAccount::CreditBalance.no_overdraft());
        assert!(CustomerAccount::DeferredRevenue.no_overdraft());
        assert_eq!(CustomerAccount::CreditBalance.normal_side(), Side::Credit);
        assert!(CustomerAccount::AppointmentQuota { pack, period: 0 }.no_overdraft());
        assert!(!CustomerAccount::AppointmentOverage { pack, period: 0 }.no_overdraft());
        assert_eq!(CustomerAccount::CreditIssued.normal_side(), Side::Debit);
        assert_eq!(
            CustomerAccount::AppointmentUsed { pack, period: 2 }.code(),
            format!("APPT-USED:{pack}:2")
        );
    }
}
