//! The rules of a collection batch, without a database: the TARGET2 calendar and how far
//! ahead a collection date must be, which invoices a batch takes, the sequence type of each
//! collection, the end-to-end ids, and the pain.008.001.08 file (built by the `sepa` crate,
//! one payment information group per scheme × sequence type, names and addresses
//! transliterated to the SEPA set by the EPC table).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc, Weekday};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::creditor::Creditor;
use super::MandateScheme;
use crate::customers::Address;

/// Days between an invoice's issue (its pre-notification: it states the amount and that it
/// is collected by direct debit) and the collection, unless configured shorter (the
/// creditor's `prenotification_days`).
pub const PRENOTIFICATION_DAYS: u32 = 14;
/// TARGET2 business days the file must reach the bank before the collection date: one for
/// CORE and B2B alike since the 2016 rulebooks (EPC016-09, EPC222-07).
pub const LEAD_BUSINESS_DAYS: u32 = 1;
/// Collections one batch may hold.
pub const MAX_COLLECTIONS: usize = 5_000;

crate::text_enum! {
    /// The sequence of a collection under its mandate.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
    pub enum SequenceType {
        /// The first collection of a recurrent mandate.
        #[serde(rename = "FRST")]
        Frst = "FRST",
        /// A later one.
        #[serde(rename = "RCUR")]
        Rcur = "RCUR",
        /// The only collection of a one-off mandate, which it spends.
        #[serde(rename = "OOFF")]
        Ooff = "OOFF",
        /// The last collection of a recurrent mandate asked to end after it
        /// (`after_final_collection`); submitting its batch revokes the mandate.
        #[serde(rename = "FNAL")]
        Fnal = "FNAL",
    }
}

impl SequenceType {
    fn to_sepa(self) -> sepa::SequenceType {
        match self {
            SequenceType::Frst => sepa::SequenceType::Frst,
            SequenceType::Rcur => sepa::SequenceType::Rcur,
            SequenceType::Ooff => sepa::SequenceType::Ooff,
            SequenceType::Fnal => sepa::SequenceType::Fnal,
        }
    }
}

/// A TARGET2 closing day: Saturday, Sunday, 1 January, Good Friday, Easter Monday, 1 May,
/// 25 and 26 December.
pub fn is_target2_business_day(date: NaiveDate) -> bool {
    if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        return false;
    }
    let easter = crate::calendar::easter_sunday(date.year());
    let closed = [(1, 1), (5, 1), (12, 25), (12, 26)]
        .iter()
        .any(|&(m, d)| date.month() == m && date.day() == d);
    !closed && date != easter - Duration::days(2) && date != easter + Duration::days(1)
}

/// The earliest collection date a file sent on `today` may ask: the TARGET2 business day
/// after [`LEAD_BUSINESS_DAYS`] TARGET2 business days have passed after today.
pub fn earliest_collection_date(today: NaiveDate) -> NaiveDate {
    let mut date = today;
    let mut lead = 0;
    loop {
        date = date.succ_opt().unwrap_or(date);
        if is_target2_business_day(date) {
            if lead == LEAD_BUSINESS_DAYS {
                return date;
            }
            lead += 1;
        }
    }
}

/// The collection date an invoice issued on `issued_on`, due on `due_on`, announces: the
/// first TARGET2 business day on or after its due date and after `prenotification_days`
/// from its issue (the invoice is the pre-notification).
pub fn announced_collection_date(
    issued_on: NaiveDate,
    due_on: NaiveDate,
    prenotification_days: u32,
) -> NaiveDate {
    let mut date = due_on.max(issued_on + Duration::days(i64::from(prenotification_days)));
    while !is_target2_business_day(date) {
        date = date.succ_opt().unwrap_or(date);
    }
    date
}

/// Refuses a collection date that is no TARGET2 business day or too close to `today`.
pub fn check_collection_date(date: NaiveDate, today: NaiveDate) -> Result<(), String> {
    if !is_target2_business_day(date) {
        return Err(format!(
            "{date} is not a TARGET2 business day (weekends, 1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December)"
        ));
    }
    let earliest = earliest_collection_date(today);
    if date < earliest {
        return Err(format!(
            "the file must reach the bank {LEAD_BUSINESS_DAYS} TARGET2 business day before the collection: the earliest collection date today is {earliest}"
        ));
    }
    if date > today + Duration::days(366) {
        return Err("at most a year ahead".into());
    }
    Ok(())
}

/// The end-to-end id of the `attempt`-th collection (1 first) of the invoice `number`:
/// unique per collection attempt, naming the invoice.
pub fn end_to_end_id(number: &str, attempt: u32) -> String {
    format!("{number}-{attempt:02}")
}

/// The message id of a batch: unique (the batch's id), within 35 characters.
pub fn message_id(batch: Uuid) -> String {
    format!("GL{}", batch.simple())
}

/// A collection, as the file carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub end_to_end_id: String,
    pub invoice_number: String,
    /// EUR, 2 decimals.
    pub amount: Decimal,
    pub sequence: SequenceType,
    pub scheme: MandateScheme,
    pub mandate_reference: String,
    pub mandate_signed_on: NaiveDate,
    pub debtor_name: String,
    pub debtor_iban: String,
    pub debtor_bic: Option<String>,
    pub debtor_address: Address,
    /// The IBAN an amendment not yet reported replaced (the earliest such): the file
    /// reports it. A change of the holder's name alone is no amendment the EPC rulebook
    /// lets the file carry (AT-24 holds the mandate id, creditor id and debtor account):
    /// the new name is simply the debtor's name.
    pub amended_from_iban: Option<String>,
}

/// A group of a file: its scheme and sequence type, and its collections.
pub fn groups(
    collections: &[Collection],
) -> Vec<((MandateScheme, SequenceType), Vec<&Collection>)> {
    let mut keys: Vec<(MandateScheme, SequenceType)> =
        collections.iter().map(|c| (c.scheme, c.sequence)).collect();
    keys.sort_by_key(|(scheme, seq)| (scheme.as_str(), *seq));
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let of: Vec<&Collection> = collections
                .iter()
                .filter(|c| (c.scheme, c.sequence) == key)
                .collect();
            (key, of)
        })
        .collect()
}

fn iso_date(d: NaiveDate) -> Result<sepa::IsoDate, String> {
    let (y, m, day) = (d.year(), d.month(), d.day());
    sepa::IsoDate::new(
        u16::try_from(y).map_err(|e| e.to_string())?,
        u8::try_from(m).map_err(|e| e.to_string())?,
        u8::try_from(day).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())
}

fn address(a: &Address) -> Result<sepa::PostalAddress, String> {
    let mut out = sepa::PostalAddress::new(a.town.trim(), &a.country)
        .map_err(|e| e.to_string())?
        .street(a.street.trim())
        .post_code(a.postcode.trim());
    if let Some(n) = &a.street_number {
        out = out.building_number(n.trim());
    }
    Ok(out)
}

fn cents(amount: Decimal) -> Result<i64, String> {
    let scaled = amount * Decimal::ONE_HUNDRED;
    if scaled.fract() != Decimal::ZERO {
        return Err(format!("{amount} has more than 2 decimals"));
    }
    i64::try_from(scaled).map_err(|e| e.to_string())
}

/// The pain.008.001.08 file of batch `batch`, created at `created_at`, collecting on
/// `collection_date` for `creditor`. Errors name what the `sepa` crate refused.
pub fn pain008(
    batch: Uuid,
    created_at: DateTime<Utc>,
    collection_date: NaiveDate,
    creditor: &Creditor,
    collections: &[Collection],
) -> Result<String, String> {
    let epc = sepa::CharsetPolicy::Transliterate(sepa::charset::Transliteration::Epc);
    let creditor_iban = sepa::validate_iban(&creditor.iban).map_err(|e| e.to_string())?;
    let creditor_bic = sepa::validate_bic(&creditor.bic).map_err(|e| e.to_string())?;
    let ci = sepa::validate_creditor_id(&creditor.creditor_id).map_err(|e| e.to_string())?;
    let when = created_at.naive_utc();
    let stamp = sepa::IsoDateTime::new(
        iso_date(when.date())?,
        u8::try_from(when.hour()).map_err(|e| e.to_string())?,
        u8::try_from(when.minute()).map_err(|e| e.to_string())?,
        u8::try_from(when.second()).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut file = sepa::Pain008Builder::new(creditor.name.as_str(), message_id(batch))
        .created_at(stamp)
        .schema(sepa::pain008::DirectDebitSchema::IsoV8)
        .charset(epc);
    for (i, ((scheme, sequence), of)) in groups(collections).into_iter().enumerate() {
        let mut group = sepa::DirectDebitGroup::new(
            creditor.name.as_str(),
            &creditor_iban,
            &ci,
            iso_date(collection_date)?,
        )
        // 35 characters at most: 34 and the group's digit (8 groups at most, 2 schemes × 4
        // sequence types)
        .payment_info_id(format!("{}{}", message_id(batch), i + 1))
        .sequence_type(sequence.to_sepa())
        .scheme(match scheme {
            MandateScheme::Core => sepa::pain008::DirectDebitScheme::Core,
            MandateScheme::B2b => sepa::pain008::DirectDebitScheme::B2b,
        })
        .creditor_bic(creditor_bic.clone())
        .creditor_address(address(&creditor.address)?);
        for c in of {
            let iban = sepa::validate_iban(&c.debtor_iban).map_err(|e| e.to_string())?;
            let mut entry = sepa::DirectDebitEntry::new(
                c.mandate_reference.as_str(),
                iso_date(c.mandate_signed_on)?,
                c.debtor_name.as_str(),
                iban,
                cents(c.amount)?,
                c.end_to_end_id.as_str(),
            )
            .with_debtor_address(address(&c.debtor_address)?)
            .with_description(format!("Facture {}", c.invoice_number));
            if let Some(bic) = &c.debtor_bic {
                entry = entry.with_bic(sepa::validate_bic(bic).map_err(|e| e.to_string())?);
            }
            if let Some(previous) = &c.amended_from_iban {
                entry = entry.with_amendment(amendment(previous, &c.debtor_iban)?);
            }
            group = group.add_entry(entry);
        }
        file = file.add_group(group);
    }
    file.build().map_err(|e| e.to_string())
}

/// The amendment details of an account change from `previous` to `current`: the previous
/// IBAN when the account stayed at the same bank, `SMNDA` (same mandate, new debtor
/// account) when it moved to another bank.
fn amendment(previous: &str, current: &str) -> Result<sepa::pain008::MandateAmendment, String> {
    Ok(if same_bank(previous, current) {
        let previous = sepa::validate_iban(previous).map_err(|e| e.to_string())?;
        sepa::pain008::MandateAmendment::debtor_iban_changed(previous)
    } else {
        sepa::pain008::MandateAmendment::debtor_account_changed()
    })
}

/// Whether two IBANs are of one bank: the same country and bank code (the BBAN's first
/// five characters, the French "code banque").
fn same_bank(a: &str, b: &str) -> bool {
    a.get(..2) == b.get(..2) && a.get(4..9) == b.get(4..9)
}

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum BatchStatus {
        /// Made: its file may be downloaded and sent to the bank.
        Created = "created",
        /// Sent: receivables moved to direct debits in transit, invoices `collection_pending`.
        Submitted = "submitted",
        /// The bank credited it: its invoices are paid.
        Settled = "settled",
    }
}

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CollectionStatus {
        Pending = "pending",
        Submitted = "submitted",
        Settled = "settled",
        /// Rejected by a bank before settlement (a pain.002).
        Rejected = "rejected",
        /// Returned after settlement (a camt.054).
        Returned = "returned",
    }
}

/// A collection batch to make.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"collection_date": "2026-12-15"}))]
pub struct NewBatch {
    /// The day the debtors' accounts are debited: a TARGET2 business day, at least one
    /// TARGET2 business day after today. The batch takes the open invoices that announced
    /// their collection on or before it (an invoice is the pre-notification: its
    /// `direct_debit` says how much and when), whose customer has an active mandate, and
    /// in no other batch not yet settled.
    #[serde(deserialize_with = "crate::input::date")]
    pub collection_date: NaiveDate,
}

/// The bank's credit of a submitted batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value_date": "2026-12-15"}))]
pub struct SettleBatch {
    /// The day the bank credited the collections (Paris): not before the collection date,
    /// not after today.
    #[serde(deserialize_with = "crate::input::date")]
    pub value_date: NaiveDate,
}

/// A payment information group of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub scheme: MandateScheme,
    pub sequence_type: SequenceType,
    pub collections: u32,
    #[schema(example = "100.00")]
    pub total: crate::money::DecimalString,
}

/// One collection of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Unique per collection attempt: the invoice's number and the attempt.
    #[schema(example = "F2026-000001-01")]
    pub end_to_end_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub invoice_id: Uuid,
    pub invoice_number: String,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub mandate_id: Uuid,
    pub mandate_reference: String,
    #[schema(example = "100.00")]
    pub amount: crate::money::DecimalString,
    pub sequence_type: SequenceType,
    pub scheme: MandateScheme,
    /// Whether it reports an amendment of the mandate's account.
    pub amendment: bool,
    pub status: CollectionStatus,
    /// The payment that settled it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub payment_id: Option<Uuid>,
}

/// A collection batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The file's `MsgId`, unique.
    pub message_id: String,
    pub collection_date: NaiveDate,
    pub status: BatchStatus,
    pub collections_count: u32,
    /// The sum of its collections (the file's control sum), whatever became of them.
    #[schema(example = "100.00")]
    pub total: crate::money::DecimalString,
    /// What the bank credited and kept: the sum of its `settled` collections.
    #[schema(example = "100.00")]
    pub collected: crate::money::DecimalString,
    /// What came back: the sum of its `rejected` and `returned` collections.
    #[schema(example = "0.00")]
    pub came_back: crate::money::DecimalString,
    /// One per scheme × sequence type, as the file groups them.
    pub groups: Vec<GroupView>,
    /// In the order of the file.
    pub collections: Vec<CollectionView>,
    pub created_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub settled_at: Option<DateTime<Utc>>,
    pub value_date: Option<NaiveDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn target2_closes_on_weekends_and_its_six_holidays_only() {
        for closed in [
            "2026-01-01",
            "2026-04-03",
            "2026-04-06",
            "2026-05-01",
            "2026-12-25",
            "2026-12-26",
            "2026-11-28",
        ] {
            assert!(!is_target2_business_day(d(closed)), "{closed}");
        }
        // French holidays that TARGET2 keeps open: Ascension, 14 July, 11 November
        for open in ["2026-05-14", "2026-07-14", "2026-11-11", "2026-11-24"] {
            assert!(is_target2_business_day(d(open)), "{open}");
        }
    }

    #[test]
    fn a_collection_date_leaves_one_target2_business_day() {
        // Tuesday: Wednesday is the lead day, Thursday the earliest collection
        assert_eq!(earliest_collection_date(d("2026-11-24")), d("2026-11-26"));
        // Thursday 24 December: Friday and Saturday are TARGET2 holidays, then a weekend
        assert_eq!(earliest_collection_date(d("2026-12-24")), d("2026-12-29"));
        assert!(check_collection_date(d("2026-11-25"), d("2026-11-24")).is_err());
        assert!(check_collection_date(d("2026-11-26"), d("2026-11-24")).is_ok());
        assert!(check_collection_date(d("2026-11-28"), d("2026-11-24"))
            .unwrap_err()
            .contains("TARGET2 business day"));
    }

    #[test]
    fn an_invoice_announces_its_due_date_or_the_next_target2_business_day() {
        // due Thursday 24 December 2026: a business day
        assert_eq!(
            announced_collection_date(d("2026-11-24"), d("2026-12-24"), 14),
            d("2026-12-24")
        );
        // due Friday 25 December: 26 December, then a weekend, are closed
        assert_eq!(
            announced_collection_date(d("2026-11-25"), d("2026-12-25"), 14),
            d("2026-12-28")
        );
        // due sooner than the pre-notification allows: the pre-notification wins
        assert_eq!(
            announced_collection_date(d("2026-11-24"), d("2026-11-30"), 14),
            d("2026-12-08")
        );
    }

    #[test]
    fn end_to_end_ids_name_the_invoice_and_the_attempt() {
        assert_eq!(end_to_end_id("F2026-000042", 1), "F2026-000042-01");
        assert_eq!(end_to_end_id("F2026-000042", 2), "F2026-000042-02");
        let id = Uuid::now_v7();
        assert_eq!(message_id(id).chars().count(), 34);
    }
}
