//! SEPA direct debit (issue 13, DOMAIN.md "SEPA required"): mandates, the creditor's
//! identity, and the rules they follow. The identifiers' checks (IBAN mod-97 and the
//! country's BBAN structure, BIC, creditor identifier) and the EPC character set come from
//! the `sepa` crate (pinned in Cargo.toml), wrapped here so that the rest of the service
//! names none of its types. The rules here take no database; `store` runs them.

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;
use crate::idempotency::KeyReused;

pub mod collection;
pub mod creditor;
pub mod prenotice;
pub mod returns;
pub mod store;
pub mod store_batches;
pub mod store_returns;

/// A mandate reference (UMR): at most 35 characters of the SEPA set.
pub const UMR_MAX: usize = 35;
/// A SEPA party name: at most 70 characters.
pub const NAME_MAX: usize = 70;
/// A mandate with no collection presented for this many months lapses (EPC rulebook,
/// counted from the last collection, or from the signature when it never collected).
pub const LAPSE_MONTHS: u32 = 36;

crate::text_enum! {
    /// The SEPA direct debit scheme a mandate was signed for.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
    pub enum MandateScheme {
        /// SEPA Core: any debtor.
        #[default]
        #[serde(rename = "CORE")]
        Core = "CORE",
        /// SEPA Business to Business: debtors that are businesses, no refund right.
        #[serde(rename = "B2B")]
        B2b = "B2B",
    }
}

crate::text_enum! {
    /// How many collections a mandate allows (the EPC rulebook's "type of payment").
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PaymentType {
        /// A series: FRST, then RCUR, and FNAL when it is asked to end.
        #[default]
        Recurrent = "recurrent",
        /// A single collection (OOFF); the mandate is spent once it is presented.
        OneOff = "one_off",
    }
}

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum MandateStatus {
        /// Collections may be presented under it.
        Active = "active",
        /// The debtor or the creditor revoked it (or a bank reported it void).
        Revoked = "revoked",
        /// No collection presented for 36 months.
        Lapsed = "lapsed",
    }
}

/// A mandate as the debtor signed it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "reference": "GL-2026-000123",
    "signed_on": "2026-11-20",
    "debtor_name": "Atelier Dupont SARL",
    "iban": "FR76 3000 6000 0112 3456 7890 189",
    "bic": "AGRIFRPP",
    "scheme": "CORE"
}))]
pub struct NewMandate {
    /// The unique mandate reference (UMR): 1 to 35 characters of the SEPA set
    /// (`A-Z a-z 0-9 / - ? : ( ) . , ' +` and space), neither starting nor ending with `/`
    /// nor holding `//`.
    #[schema(min_length = 1, max_length = 35, example = "GL-2026-000123")]
    pub reference: String,
    /// The day the debtor signed (Paris), not after today.
    #[serde(deserialize_with = "crate::input::date")]
    pub signed_on: NaiveDate,
    /// The account holder, as the bank knows them (transliterated to the SEPA set in
    /// collection files).
    #[schema(min_length = 1, max_length = 70, example = "Atelier Dupont SARL")]
    pub debtor_name: String,
    /// The debtor's IBAN (ISO 13616), spaces allowed: its check digits and its country's
    /// length and structure are checked; the country must be in the SEPA area.
    #[schema(
        min_length = 15,
        max_length = 42,
        example = "FR7630006000011234567890189"
    )]
    pub iban: String,
    /// The debtor's bank BIC (8 or 11 characters), optional.
    #[serde(default)]
    #[schema(min_length = 8, max_length = 11, example = "AGRIFRPP")]
    pub bic: Option<String>,
    /// `CORE` (default) or `B2B`.
    #[serde(default)]
    pub scheme: MandateScheme,
    /// `recurrent` (default: what subscriptions to SEPA-required offers need) or `one_off`
    /// (one collection, OOFF, then the mandate is spent).
    #[serde(default)]
    pub payment_type: PaymentType,
}

/// A change of the debtor's account or name: an amendment, reported to the debtor's bank
/// with the next collection under the mandate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"iban": "FR1420041010050500013M02606", "bic": "PSSTFRPP"}))]
pub struct MandateAmendmentRequest {
    /// The new IBAN. The BIC follows the account: with a new IBAN, the mandate's BIC is
    /// the `bic` given here, or none.
    #[serde(default)]
    #[schema(min_length = 15, max_length = 42)]
    pub iban: Option<String>,
    /// The new BIC (alone: the same account, its bank's BIC corrected).
    #[serde(default)]
    #[schema(min_length = 8, max_length = 11)]
    pub bic: Option<String>,
    /// The new account holder's name.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 70)]
    pub debtor_name: Option<String>,
}

/// Why a mandate is revoked (optional body of `POST /v1/mandates/{id}/revoke`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Revoked by the debtor's letter of 2026-11-20"}))]
pub struct RevokeMandate {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub reason: Option<String>,
    /// `true`: the mandate ends after one last collection instead of at once. It stays
    /// active for the next batch, which collects what it can under it (the last collection
    /// as FNAL); submitting that batch revokes it. It announces no new collection and no
    /// longer counts for subscriptions meanwhile. Only for a recurrent mandate.
    #[serde(default)]
    pub after_final_collection: bool,
}

/// What an amendment replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AmendmentView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub amended_on: NaiveDate,
    /// The IBAN before, when the account changed.
    pub previous_iban: Option<String>,
    /// The BIC before, when it changed (null as well when there was none).
    pub previous_bic: Option<String>,
    pub bic_changed: bool,
    /// The name before, when it changed.
    pub previous_debtor_name: Option<String>,
    /// The collection batch that reported it to the debtor's bank; null until then.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reported_in: Option<Uuid>,
}

/// A mandate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193e0a0-0000-7000-8000-000000001001",
    "customer_id": "0193e0a0-0000-7000-8000-000000000001",
    "reference": "GL-2026-000123",
    "signed_on": "2026-11-20",
    "debtor_name": "Atelier Dupont SARL",
    "iban": "FR7630006000011234567890189",
    "bic": "AGRIFRPP",
    "scheme": "CORE",
    "payment_type": "recurrent",
    "status": "active",
    "final_collection_requested_at": null,
    "status_reason": null,
    "status_changed_at": null,
    "last_collected_on": null,
    "lapses_after": "2029-11-20",
    "amendments": [],
    "created_at": "2026-11-20T10:00:00Z"
}))]
pub struct MandateView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub reference: String,
    pub signed_on: NaiveDate,
    pub debtor_name: Option<String>,
    /// Electronic format, without spaces.
    pub iban: Option<String>,
    pub bic: Option<String>,
    pub scheme: MandateScheme,
    pub payment_type: PaymentType,
    pub status: MandateStatus,
    /// When it was asked to end after its next collection (FNAL); null otherwise.
    pub final_collection_requested_at: Option<DateTime<Utc>>,
    pub status_reason: Option<String>,
    pub status_changed_at: Option<DateTime<Utc>>,
    /// The collection date of the last collection presented under it.
    pub last_collected_on: Option<NaiveDate>,
    /// While active: the last day a collection keeps it alive; it lapses the day after
    /// unless one is presented by then.
    pub lapses_after: Option<NaiveDate>,
    /// Oldest first.
    pub amendments: Vec<AmendmentView>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SepaError {
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error("customer {0} is closed: its account is read-only")]
    CustomerClosed(Uuid),
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("a mandate with the reference `{0}` already exists")]
    DuplicateReference(String),
    #[error("mandate {0} does not exist")]
    NotFound(Uuid),
    #[error("{0} {1} is {2}: {3}")]
    WrongState(&'static str, Uuid, &'static str, &'static str),
    #[error("the idempotency key was already used for a different request")]
    IdempotencyConflict,
    #[error("another batch took some of these invoices at the same time: try again")]
    BatchConflict,
    #[error("the collection file could not be built: {0}")]
    File(String),
    #[error("nothing was applied: {}", describe(.0))]
    NotApplied(Vec<FieldError>),
    #[error(transparent)]
    Payment(#[from] crate::payments::PaymentError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

fn describe(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    parts.join("; ")
}

impl From<KeyReused> for SepaError {
    fn from(_: KeyReused) -> Self {
        SepaError::IdempotencyConflict
    }
}

impl crate::db::Retryable for SepaError {
    fn is_retryable(&self) -> bool {
        match self {
            SepaError::Payment(e) => e.is_retryable(),
            SepaError::Ledger(e) => e.is_retryable(),
            SepaError::Database(e) => crate::db::is_retryable(e),
            _ => false,
        }
    }
}

/// The debtor's account and name, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebtorAccount {
    pub debtor_name: String,
    /// Electronic format (no spaces, upper case).
    pub iban: String,
    pub bic: Option<String>,
}

/// A mandate request, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MandateFields {
    pub reference: String,
    pub signed_on: NaiveDate,
    pub account: DebtorAccount,
    pub payment_type: PaymentType,
    pub scheme: MandateScheme,
}

/// A mandate reference: 1 to 35 characters of the SEPA set, the EPC slash rules.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let n = reference.chars().count();
    if n == 0 || n > UMR_MAX || reference.trim() != reference {
        return Err(format!(
            "1 to {UMR_MAX} characters without leading or trailing spaces"
        ));
    }
    sepa::validate::check_id("reference", reference).map_err(|e| match e {
        sepa::ValidationError::InvalidCharacter { ch, .. } => format!(
            "`{ch}` is not in the SEPA set for references (A-Z a-z 0-9 / - ? : ( ) . , ' + and space)"
        ),
        sepa::ValidationError::SlashRule { .. } => {
            "may neither start nor end with `/` nor hold `//`".to_string()
        }
        other => other.to_string(),
    })
}

/// A party name: 1 to 70 characters, not blank (any script: collection files transliterate).
pub fn check_name(name: &str) -> Result<String, String> {
    let trimmed = name.trim();
    let n = trimmed.chars().count();
    if n == 0 || n > NAME_MAX || trimmed.chars().any(char::is_control) {
        return Err(format!("1 to {NAME_MAX} characters, not blank"));
    }
    Ok(trimmed.to_string())
}

/// An IBAN: ISO 13616 check digits (mod 97), its country's length and BBAN structure, a
/// country of the SEPA area. Answers the electronic format.
pub fn check_iban(raw: &str) -> Result<String, String> {
    let iban = sepa::validate_iban(raw).map_err(|e| format!("not a valid IBAN: {e}"))?;
    if !iban.is_sepa() {
        return Err(format!(
            "{} is not a country of the SEPA direct debit area",
            iban.country_code()
        ));
    }
    Ok(iban.as_str().to_string())
}

/// A BIC (ISO 9362): 8 or 11 characters. Answers it in upper case.
pub fn check_bic(raw: &str) -> Result<String, String> {
    sepa::validate_bic(raw)
        .map(|b| b.as_str().to_string())
        .map_err(|e| format!("not a valid BIC: {e}"))
}

impl NewMandate {
    /// Every field checked at once (each offending one named), `today` being Paris's date.
    pub fn validate(&self, today: NaiveDate) -> Result<MandateFields, SepaError> {
        let mut errors = Vec::new();
        if let Err(e) = check_reference(&self.reference) {
            errors.push(FieldError::new("reference", e));
        }
        if self.signed_on > today {
            errors.push(FieldError::new(
                "signed_on",
                format!("a signature date may not be in the future (today is {today})"),
            ));
        }
        let name = check_name(&self.debtor_name)
            .map_err(|e| errors.push(FieldError::new("debtor_name", e)))
            .ok();
        let iban = check_iban(&self.iban)
            .map_err(|e| errors.push(FieldError::new("iban", e)))
            .ok();
        let bic = match &self.bic {
            None => Some(None),
            Some(b) => check_bic(b)
                .map(Some)
                .map_err(|e| errors.push(FieldError::new("bic", e)))
                .ok(),
        };
        match (name, iban, bic) {
            (Some(debtor_name), Some(iban), Some(bic)) if errors.is_empty() => Ok(MandateFields {
                reference: self.reference.clone(),
                signed_on: self.signed_on,
                account: DebtorAccount {
                    debtor_name,
                    iban,
                    bic,
                },
                scheme: self.scheme,
                payment_type: self.payment_type,
            }),
            _ => Err(SepaError::Invalid(errors)),
        }
    }
}

/// What an amendment changes, and what it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amendment {
    pub new: DebtorAccount,
    pub previous_iban: Option<String>,
    pub previous_bic: Option<String>,
    pub bic_changed: bool,
    pub previous_debtor_name: Option<String>,
}

impl MandateAmendmentRequest {
    /// The amendment of `current` this asks, checked: at least one of `iban`, `bic`,
    /// `debtor_name`, and something must change.
    pub fn amend(&self, current: &DebtorAccount) -> Result<Amendment, SepaError> {
        let mut errors = Vec::new();
        if self.iban.is_none() && self.bic.is_none() && self.debtor_name.is_none() {
            return Err(SepaError::Invalid(vec![FieldError::new(
                "body",
                "give the new `iban`, `bic` or `debtor_name`",
            )]));
        }
        let iban = self
            .iban
            .as_deref()
            .map(check_iban)
            .transpose()
            .map_err(|e| errors.push(FieldError::new("iban", e)))
            .ok()
            .flatten();
        let bic = self
            .bic
            .as_deref()
            .map(check_bic)
            .transpose()
            .map_err(|e| errors.push(FieldError::new("bic", e)))
            .ok()
            .flatten();
        let name = self
            .debtor_name
            .as_deref()
            .map(check_name)
            .transpose()
            .map_err(|e| errors.push(FieldError::new("debtor_name", e)))
            .ok()
            .flatten();
        if !errors.is_empty() {
            return Err(SepaError::Invalid(errors));
        }
        let new = DebtorAccount {
            debtor_name: name.unwrap_or_else(|| current.debtor_name.clone()),
            // the BIC follows the account: a new IBAN takes the BIC given with it, or none
            bic: match (&iban, bic) {
                (Some(_), bic) => bic,
                (None, Some(bic)) => Some(bic),
                (None, None) => current.bic.clone(),
            },
            iban: iban.unwrap_or_else(|| current.iban.clone()),
        };
        if new == *current {
            return Err(SepaError::Invalid(vec![FieldError::new(
                "body",
                "the mandate already holds these values: nothing to amend",
            )]));
        }
        Ok(Amendment {
            previous_iban: (new.iban != current.iban).then(|| current.iban.clone()),
            bic_changed: new.bic != current.bic,
            previous_bic: (new.bic != current.bic)
                .then(|| current.bic.clone())
                .flatten(),
            previous_debtor_name: (new.debtor_name != current.debtor_name)
                .then(|| current.debtor_name.clone()),
            new,
        })
    }
}

/// The last day on which a collection keeps a mandate last used (collected, or signed)
/// on `last_used` alive: it lapses once 36 months have passed, that is from
/// `last_used + 36 months` (clamped to the month's end).
pub fn lapses_after(last_used: NaiveDate) -> NaiveDate {
    let lapse_day = last_used
        .checked_add_months(Months::new(LAPSE_MONTHS))
        .unwrap_or(NaiveDate::MAX);
    lapse_day.pred_opt().unwrap_or(lapse_day)
}

/// Whether a mandate last used on `last_used` has lapsed on `today` (Paris).
pub fn has_lapsed(last_used: NaiveDate, today: NaiveDate) -> bool {
    today > lapses_after(last_used)
}

/// The latest last use of a mandate lapsed on `today`: a mandate has lapsed exactly when
/// it was last used on or before it (what the store's SQL compares, equal to
/// [`has_lapsed`] whatever the month ends).
pub fn lapse_cutoff(today: NaiveDate) -> NaiveDate {
    let mut cutoff = today
        .checked_sub_months(Months::new(LAPSE_MONTHS))
        .unwrap_or(NaiveDate::MIN);
    // adding months clamps to the month's end: settle on the exact boundary
    while cutoff > NaiveDate::MIN && !has_lapsed(cutoff, today) {
        cutoff = cutoff.pred_opt().unwrap_or(NaiveDate::MIN);
    }
    while cutoff
        .succ_opt()
        .is_some_and(|next| has_lapsed(next, today))
    {
        cutoff = cutoff.succ_opt().unwrap_or(cutoff);
    }
    cutoff
}

#[cfg(test)]
mod tests;
