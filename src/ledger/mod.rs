//! The ledger core: accounts, balanced transactions of postings, balances and two-phase
//! holds. Domain modules build a [`NewTransaction`] (whose constructor refuses imbalance)
//! or a [`NewHold`] and hand it to the functions of [`store`]; PostgreSQL checks every
//! invariant again (see the first migration).

pub mod chart;
pub mod fec;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::{Amount, Unit};

macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Serialize,
            Deserialize,
            ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(AccountId, "Identifies a ledger account.");
id_type!(TransactionId, "Identifies a ledger transaction.");
id_type!(HoldId, "Identifies a hold (a two-phase reservation).");

/// Which side of an account a posting moves.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "debit" => Some(Side::Debit),
            "credit" => Some(Side::Credit),
            _ => None,
        }
    }
}

/// One line of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub account: AccountId,
    pub side: Side,
    pub amount: Amount,
}

impl Posting {
    pub fn debit(account: AccountId, amount: Amount) -> Self {
        Posting {
            account,
            side: Side::Debit,
            amount,
        }
    }

    pub fn credit(account: AccountId, amount: Amount) -> Self {
        Posting {
            account,
            side: Side::Credit,
            amount,
        }
    }
}

/// Why the ledger refused something.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("a transaction needs at least two postings")]
    TooFewPostings,
    #[error("a transaction has at most {MAX_POSTINGS} postings")]
    TooManyPostings,
    #[error("the transaction does not balance in {0}: debits and credits differ by {1}")]
    Unbalanced(Unit, Decimal),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),
    #[error(
        "a posting does not fit its account (unknown account, other unit, or too many decimals)"
    )]
    PostingInvalid,
    #[error("transaction {0} does not exist")]
    UnknownTransaction(TransactionId),
    #[error("hold {0} does not exist")]
    UnknownHold(HoldId),
    #[error("insufficient funds: a no-overdraft account would go below zero")]
    InsufficientFunds,
    #[error("the idempotency key was already used for a different request")]
    IdempotencyConflict,
    #[error("transaction {0} has already been reversed")]
    AlreadyReversed(TransactionId),
    #[error("hold {0} is {1}, not pending")]
    HoldNotPending(HoldId, HoldStatus),
    #[error("cannot capture {requested} from hold {hold} of {held}")]
    CaptureExceedsHold {
        hold: HoldId,
        requested: Decimal,
        held: Decimal,
    },
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

pub const MAX_POSTINGS: usize = 100;
pub const MAX_KEY_LEN: usize = 255;

/// A transaction ready to post: balanced per unit by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    pub idempotency_key: String,
    pub kind: String,
    /// When the movement takes effect, as the caller asked (part of the request).
    pub effective_at: Option<DateTime<Utc>>,
    /// When it is posted, by the caller's clock: its effective instant when none was
    /// asked. Not part of the request, so that a retry later replays the first post.
    pub posted_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub postings: Vec<Posting>,
    pub reverses: Option<TransactionId>,
}

impl NewTransaction {
    /// Checks the key, the kind, the number of postings and that debits equal credits in
    /// every unit.
    pub fn new(
        idempotency_key: impl Into<String>,
        kind: impl Into<String>,
        postings: Vec<Posting>,
    ) -> Result<Self, LedgerError> {
        let idempotency_key = idempotency_key.into();
        let kind = kind.into();
        check_key(&idempotency_key)?;
        if !valid_kind(&kind) {
            return Err(LedgerError::Invalid {
                field: "kind",
                reason:
                    "lower-case letters, digits, `_` and `.`, starting with a letter, at most 64"
                        .into(),
            });
        }
        if postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        if postings.len() > MAX_POSTINGS {
            return Err(LedgerError::TooManyPostings);
        }
        let mut net: BTreeMap<Unit, Decimal> = BTreeMap::new();
        for p in &postings {
            let signed = match p.side {
                Side::Debit => p.amount.value(),
                Side::Credit => -p.amount.value(),
            };
            *net.entry(p.amount.unit()).or_default() += signed;
        }
        if let Some((unit, diff)) = net.into_iter().find(|(_, d)| !d.is_zero()) {
            return Err(LedgerError::Unbalanced(unit, diff.abs()));
        }
        Ok(NewTransaction {
            idempotency_key,
            kind,
            effective_at: None,
            posted_at: None,
            description: None,
            metadata: serde_json::Map::new(),
            postings,
            reverses: None,
        })
    }

    pub fn effective_at(mut self, at: DateTime<Utc>) -> Self {
        self.effective_at = Some(at);
        self
    }

    pub fn posted_at(mut self, now: DateTime<Utc>) -> Self {
        self.posted_at = Some(now);
        self
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    pub fn metadata(mut self, metadata: serde_json::Map<String, serde_json::Value>) -> Self {
        self.metadata = metadata;
        self
    }

    /// The transaction that undoes `original`: every posting on the opposite side.
    pub fn reversal_of(
        original: &TransactionView,
        idempotency_key: String,
        effective_at: DateTime<Utc>,
    ) -> Result<Self, LedgerError> {
        let postings = original
            .postings
            .iter()
            .map(|p| {
                let amount = Amount::new(p.amount.0, p.unit).map_err(|e| LedgerError::Invalid {
                    field: "postings",
                    reason: e.to_string(),
                })?;
                Ok(Posting {
                    account: p.account_id,
                    side: p.side.opposite(),
                    amount,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let mut tx = NewTransaction::new(idempotency_key, "reversal", postings)?
            .effective_at(effective_at)
            .description(format!("Reversal of transaction {}", original.id));
        tx.reverses = Some(original.id);
        Ok(tx)
    }

    /// A digest of everything the caller asked for, so that a replay of the same key with
    /// a different request is detected. serde_json maps are ordered, so this is canonical.
    pub fn request_hash(&self) -> Vec<u8> {
        let postings: Vec<_> = self
            .postings
            .iter()
            .map(|p| {
                (
                    p.account.0,
                    p.side.as_str(),
                    p.amount.value().normalize().to_string(),
                    p.amount.unit().code(),
                )
            })
            .collect();
        let canonical = serde_json::json!({
            "kind": self.kind,
            "effective_at": self.effective_at,
            "description": self.description,
            "metadata": self.metadata,
            "postings": postings,
            "reverses": self.reverses,
        });
        Sha256::digest(canonical.to_string().as_bytes()).to_vec()
    }
}

fn check_key(key: &str) -> Result<(), LedgerError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(LedgerError::Invalid {
            field: "idempotency_key",
            reason: format!("1 to {MAX_KEY_LEN} characters, no control characters"),
        });
    }
    Ok(())
}

fn valid_kind(kind: &str) -> bool {
    let mut chars = kind.chars();
    kind.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// A reservation of `amount` from `debit` to `credit`, to be captured (in full or in part),
/// voided, or expired at `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHold {
    pub idempotency_key: String,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Amount,
    pub expires_at: DateTime<Utc>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewHold {
    pub fn new(
        idempotency_key: impl Into<String>,
        debit: AccountId,
        credit: AccountId,
        amount: Amount,
        expires_at: DateTime<Utc>,
    ) -> Result<Self, LedgerError> {
        let idempotency_key = idempotency_key.into();
        check_key(&idempotency_key)?;
        if debit == credit {
            return Err(LedgerError::Invalid {
                field: "credit",
                reason: "a hold moves value between two different accounts".into(),
            });
        }
        Ok(NewHold {
            idempotency_key,
            debit,
            credit,
            amount,
            expires_at,
            metadata: serde_json::Map::new(),
        })
    }

    pub fn request_hash(&self) -> Vec<u8> {
        let canonical = serde_json::json!({
            "debit": self.debit,
            "credit": self.credit,
            "amount": self.amount.value().normalize().to_string(),
            "unit": self.amount.unit(),
            "expires_at": self.expires_at,
            "metadata": self.metadata,
        });
        Sha256::digest(canonical.to_string().as_bytes()).to_vec()
    }
}

/// Where a hold stands. Only `pending` may change, and only to one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Pending,
    Captured,
    Voided,
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Pending => "pending",
            HoldStatus::Captured => "captured",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            HoldStatus::Pending,
            HoldStatus::Captured,
            HoldStatus::Voided,
            HoldStatus::Expired,
        ]
        .into_iter()
        .find(|h| h.as_str() == s)
    }
}

impl fmt::Display for HoldStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a post: the transaction's id, and whether it already existed (a replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub id: TransactionId,
    pub replayed: bool,
}

pub use crate::money::DecimalString;

/// An account as the API shows it, with its balance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountView {
    pub id: AccountId,
    /// Chart-of-accounts code, e.g. `411` or `706`.
    #[schema(example = "706")]
    pub code: String,
    pub name: String,
    pub unit: Unit,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<Uuid>,
    /// The side on which the balance is normally positive.
    pub normal_side: Side,
    /// When true the balance (pending holds included) can never go below zero.
    pub no_overdraft: bool,
    pub balance: BalanceView,
    pub created_at: DateTime<Utc>,
}

/// Balance of one account. `posted` = credits − debits for credit-normal accounts and
/// debits − credits for debit-normal ones; `available` also subtracts pending holds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceView {
    pub posted_debits: DecimalString,
    pub posted_credits: DecimalString,
    pub pending_debits: DecimalString,
    pub pending_credits: DecimalString,
    pub posted: DecimalString,
    pub available: DecimalString,
    /// The instant this balance was computed for, when asked for a past instant.
    pub as_of: Option<DateTime<Utc>>,
}

impl BalanceView {
    pub fn compute(
        normal_side: Side,
        unit: Unit,
        [posted_debits, posted_credits, pending_debits, pending_credits]: [Decimal; 4],
        as_of: Option<DateTime<Utc>>,
    ) -> Self {
        let (posted, available) = match normal_side {
            Side::Credit => (
                posted_credits - posted_debits,
                posted_credits - posted_debits - pending_debits,
            ),
            Side::Debit => (
                posted_debits - posted_credits,
                posted_debits - posted_credits - pending_credits,
            ),
        };
        let s = |d: Decimal| unit.show(d);
        BalanceView {
            posted_debits: s(posted_debits),
            posted_credits: s(posted_credits),
            pending_debits: s(pending_debits),
            pending_credits: s(pending_credits),
            posted: s(posted),
            available: s(available),
            as_of,
        }
    }
}

/// One posting as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostingView {
    /// Position in the ledger (increasing).
    pub id: i64,
    pub transaction_id: TransactionId,
    pub account_id: AccountId,
    pub side: Side,
    pub amount: DecimalString,
    pub unit: Unit,
}

/// A transaction with its postings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionView {
    pub id: TransactionId,
    #[schema(example = "manual_adjustment")]
    pub kind: String,
    pub idempotency_key: String,
    pub effective_at: DateTime<Utc>,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub reverses: Option<TransactionId>,
    /// The transaction that reversed this one, if any.
    pub reversed_by: Option<TransactionId>,
    pub postings: Vec<PostingView>,
    pub created_at: DateTime<Utc>,
}

/// A hold as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldView {
    pub id: HoldId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: DecimalString,
    pub unit: Unit,
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    pub captured_amount: Option<DecimalString>,
    pub capture_transaction_id: Option<TransactionId>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// An account whose stored balance differs from the sum of its postings and holds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceMismatch {
    pub account_id: AccountId,
    /// Which figure differs: `posted_debits`, `posted_credits`, `pending_debits` or `pending_credits`.
    pub field: String,
    pub stored: DecimalString,
    pub recomputed: DecimalString,
}

/// The result of recomputing every balance from postings and pending holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyReport {
    pub accounts_checked: i64,
    pub transactions_checked: i64,
    /// Balances that differ from their postings: empty when the ledger is consistent.
    pub mismatches: Vec<BalanceMismatch>,
    /// Transactions whose postings do not balance per unit: empty when consistent.
    pub unbalanced_transactions: Vec<TransactionId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn eur(v: Decimal) -> Amount {
        Amount::new(v, Unit::Eur).unwrap()
    }

    #[test]
    fn refuses_imbalance_per_unit() {
        let (a, b) = (AccountId(Uuid::nil()), AccountId(Uuid::max()));
        let ok = NewTransaction::new(
            "k",
            "test",
            vec![
                Posting::debit(a, eur(dec!(1.5))),
                Posting::credit(b, eur(dec!(1.5))),
            ],
        );
        assert!(ok.is_ok());
        let off = NewTransaction::new(
            "k",
            "test",
            vec![
                Posting::debit(a, eur(dec!(1.5))),
                Posting::credit(b, eur(dec!(1.4))),
            ],
        );
        assert!(matches!(off, Err(LedgerError::Unbalanced(Unit::Eur, d)) if d == dec!(0.1)));
        let credit = Amount::new(dec!(1.5), Unit::Credit).unwrap();
        let mixed = NewTransaction::new(
            "k",
            "test",
            vec![
                Posting::debit(a, eur(dec!(1.5))),
                Posting::credit(b, credit),
            ],
        );
        assert!(matches!(mixed, Err(LedgerError::Unbalanced(..))));
        assert!(matches!(
            NewTransaction::new("k", "test", vec![Posting::debit(a, eur(dec!(1)))]),
            Err(LedgerError::TooFewPostings)
        ));
        assert!(matches!(
            NewTransaction::new("", "test", vec![]),
            Err(LedgerError::Invalid {
                field: "idempotency_key",
                ..
            })
        ));
        assert!(matches!(
            NewTransaction::new("k", "Bad Kind", vec![]),
            Err(LedgerError::Invalid { field: "kind", .. })
        ));
    }

    #[test]
    fn request_hash_sees_every_field() {
        let (a, b) = (AccountId(Uuid::nil()), AccountId(Uuid::max()));
        let base = NewTransaction::new(
            "k",
            "test",
            vec![
                Posting::debit(a, eur(dec!(2))),
                Posting::credit(b, eur(dec!(2))),
            ],
        )
        .unwrap();
        let same = NewTransaction::new(
            "k",
            "test",
            vec![
                Posting::debit(a, eur(dec!(2.00))),
                Posting::credit(b, eur(dec!(2))),
            ],
        )
        .unwrap();
        assert_eq!(base.request_hash(), same.request_hash());
        let other_amount = NewTransaction::new(
            "k",
            "test",
            vec![
                Posting::debit(a, eur(dec!(3))),
                Posting::credit(b, eur(dec!(3))),
            ],
        )
        .unwrap();
        assert_ne!(base.request_hash(), other_amount.request_hash());
        assert_ne!(
            base.request_hash(),
            base.clone().description("x").request_hash()
        );
    }

    #[test]
    fn balance_signs_follow_the_normal_side() {
        let b = BalanceView::compute(
            Side::Credit,
            Unit::Credit,
            [dec!(3), dec!(10), dec!(2), dec!(0)],
            None,
        );
        assert_eq!((b.posted.0, b.available.0), (dec!(7), dec!(5)));
        assert_eq!(b.posted.0.to_string(), "7.00");
        let b = BalanceView::compute(
            Side::Debit,
            Unit::Ticket,
            [dec!(10), dec!(3), dec!(0), dec!(4)],
            None,
        );
        assert_eq!(
            (b.posted.0.to_string(), b.available.0.to_string()),
            ("7".into(), "3".into())
        );
    }
}
