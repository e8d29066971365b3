//! Rejects and returns, without a database: what a pain.002 status report or a camt.054
//! debit notification says came back (read by the pinned `sepa` crate), and what each
//! reason code asks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;

/// The reason codes after which the mandate is void: no mandate (MD01), account closed
/// (AC04) or blocked (AC06), debtor deceased (MD07).
pub const MANDATE_VOID: [&str; 4] = ["MD01", "AC04", "AC06", "MD07"];
/// The reason codes after which the collection is presented once more: insufficient funds
/// (AM04), no reason given (MS03).
pub const PRESENT_AGAIN: [&str; 2] = ["AM04", "MS03"];

/// A report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ReportFormat {
    #[serde(rename = "pain.002")]
    Pain002,
    #[serde(rename = "camt.054")]
    Camt054,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Pain002 => "pain.002",
            ReportFormat::Camt054 => "camt.054",
        }
    }
}

/// One collection a report says came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameBack {
    pub end_to_end_id: String,
    /// The ISO 20022 reason code.
    pub reason: String,
}

/// A report, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub format: ReportFormat,
    pub message_id: String,
    pub came_back: Vec<CameBack>,
}

/// What a return leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnAction {
    /// The mandate is revoked: nothing more is collected under it.
    MandateRevoked,
    /// The invoice is collected once more by the next batch, under a new end-to-end id.
    PresentedAgain,
    /// The invoice is open again, for the dunning job.
    Dunning,
}

/// What the `attempt`-th collection of an invoice coming back for `reason` leads to.
pub fn action(reason: &str, attempt: u32) -> ReturnAction {
    if MANDATE_VOID.contains(&reason) {
        ReturnAction::MandateRevoked
    } else if PRESENT_AGAIN.contains(&reason) && attempt == 1 {
        ReturnAction::PresentedAgain
    } else {
        ReturnAction::Dunning
    }
}

/// Whether it is a rejection before settlement or a return after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnKind {
    /// Before settlement: 5112 → 411.
    Rejected,
    /// After settlement: 512 → 411, the payment given back.
    Returned,
}

/// One collection that came back, as applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppliedReturn {
    pub end_to_end_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub collection_id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub invoice_id: Uuid,
    pub reason: String,
    pub kind: ReturnKind,
    pub action: ReturnAction,
}

/// An imported report and what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReturnReport {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub format: ReportFormat,
    /// The report's own message id: a report is imported once.
    pub message_id: String,
    pub applied: Vec<AppliedReturn>,
    pub imported_at: chrono::DateTime<chrono::Utc>,
}

/// Reads `xml` as a pain.002 status report or a camt.054 notification, by its namespace.
/// Every part that cannot be applied is named (a rejected group that names no
/// transaction, a transaction without end-to-end id or reason).
pub fn read(xml: &str) -> Result<Report, Vec<FieldError>> {
    let malformed = |e: String| vec![FieldError::new("body", e)];
    if xml.contains("urn:iso:std:iso:20022:tech:xsd:pain.002.") {
        let doc = sepa::parse_pain002(xml).map_err(|e| malformed(e.to_string()))?;
        let mut errors = Vec::new();
        let mut came_back = Vec::new();
        for (i, group) in doc.payment_info_statuses.iter().enumerate() {
            let rejected = |s: &Option<sepa::pain002::PaymentStatus>| {
                matches!(s, Some(sepa::pain002::PaymentStatus::Rjct))
            };
            if rejected(&group.status) && group.transactions.is_empty() {
                errors.push(FieldError::new(
                    format!("OrgnlPmtInfAndSts[{i}]"),
                    "a rejected group that names no transaction: not applied",
                ));
            }
            for (j, tx) in group.transactions.iter().enumerate() {
                if !rejected(&tx.status) {
                    continue;
                }
                let at = format!("OrgnlPmtInfAndSts[{i}].TxInfAndSts[{j}]");
                match (&tx.original_end_to_end_id, tx.reason_codes.first()) {
                    (Some(e2e), Some(reason)) => came_back.push(CameBack {
                        end_to_end_id: e2e.clone(),
                        reason: reason.as_code().to_string(),
                    }),
                    _ => errors.push(FieldError::new(at, "no OrgnlEndToEndId or reason code")),
                }
            }
        }
        if rejected_group(&doc) && came_back.is_empty() && errors.is_empty() {
            errors.push(FieldError::new(
                "OrgnlGrpInfAndSts",
                "the whole file was rejected without naming a transaction: not applied",
            ));
        }
        return finish(ReportFormat::Pain002, doc.msg_id, came_back, errors);
    }
    if xml.contains("urn:iso:std:iso:20022:tech:xsd:camt.054.") {
        let doc = sepa::parse_camt054(xml).map_err(|e| malformed(e.to_string()))?;
        let mut errors = Vec::new();
        let mut came_back = Vec::new();
        for (i, n) in doc.notifications.iter().enumerate() {
            for (j, entry) in n.entries.iter().enumerate() {
                for (k, d) in entry.details.iter().enumerate() {
                    let Some(reason) = &d.return_reason_code else {
                        continue;
                    };
                    match &d.end_to_end_id {
                        Some(e2e) => came_back.push(CameBack {
                            end_to_end_id: e2e.clone(),
                            reason: reason.clone(),
                        }),
                        None => errors.push(FieldError::new(
                            format!("Ntfctn[{i}].Ntry[{j}].TxDtls[{k}]"),
                            "a return without EndToEndId",
                        )),
                    }
                }
            }
        }
        return finish(ReportFormat::Camt054, doc.msg_id, came_back, errors);
    }
    Err(malformed(
        "neither a pain.002 status report nor a camt.054 notification (by its namespace)".into(),
    ))
}

fn rejected_group(doc: &sepa::pain002::Pain002Document) -> bool {
    matches!(doc.group_status, Some(sepa::pain002::PaymentStatus::Rjct))
}

fn finish(
    format: ReportFormat,
    message_id: String,
    came_back: Vec<CameBack>,
    mut errors: Vec<FieldError>,
) -> Result<Report, Vec<FieldError>> {
    let n = message_id.chars().count();
    if n == 0 || n > 35 {
        errors.push(FieldError::new("MsgId", "1 to 35 characters"));
    }
    for c in &came_back {
        let ok = c.reason.len() == 4 && c.reason.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            errors.push(FieldError::new(
                c.end_to_end_id.clone(),
                format!("reason code `{}` is not 4 letters or digits", c.reason),
            ));
        }
    }
    if came_back.is_empty() && errors.is_empty() {
        errors.push(FieldError::new(
            "body",
            "no rejected or returned transaction in this report",
        ));
    }
    if errors.is_empty() {
        Ok(Report {
            format,
            message_id,
            came_back,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_code_asks_its_own_action() {
        for code in ["MD01", "AC04", "AC06", "MD07"] {
            assert_eq!(action(code, 1), ReturnAction::MandateRevoked);
            assert_eq!(action(code, 2), ReturnAction::MandateRevoked);
        }
        for code in ["AM04", "MS03"] {
            assert_eq!(action(code, 1), ReturnAction::PresentedAgain);
            assert_eq!(action(code, 2), ReturnAction::Dunning, "a second failure");
        }
        assert_eq!(action("MS02", 1), ReturnAction::Dunning);
    }

    #[test]
    fn other_documents_are_named_malformed() {
        let refused = read("<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.008.001.08\"/>")
            .unwrap_err();
        assert_eq!(refused[0].field, "body");
        assert!(read("not xml at all").is_err());
        let truncated = "<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.054.001.08\"><BkToCstmrDbtCdtNtfctn>";
        assert_eq!(read(truncated).unwrap_err()[0].field, "body");
    }
}
