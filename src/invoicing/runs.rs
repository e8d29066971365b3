//! Invoice runs, without a database: their states, what they show, the progress line the
//! CLI prints. The engine is in `store_runs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::DecimalString;

/// Longest error text kept per customer (the column's CHECK).
pub const MAX_ERROR_CHARS: usize = 2000;

crate::text_enum! {
    /// Where a run is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RunStatus {
        /// Customers are being invoiced.
        Running = "running",
        /// Every customer was taken; those that failed are listed in `errors`.
        Completed = "completed",
        /// The process running it stopped before the end; what it issued stays issued, and
        /// a new run for the same `as_of` issues the rest.
        Interrupted = "interrupted",
    }
}

/// A customer whose invoice a run could not issue (the next run tries again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    #[schema(example = "numeric field overflow")]
    pub error: String,
}

/// An invoice run: one invoice per customer with charges created up to `as_of` and not yet
/// invoiced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "019a6d3e-7c4a-7000-8000-000000000001",
    "as_of": "2026-12-01T00:00:00Z",
    "status": "running",
    "customers_total": 10000,
    "customers_done": 1200,
    "customers_failed": 1,
    "invoices_issued": 1187,
    "total_ht": "249270.00",
    "total_vat": "49854.00",
    "total_ttc": "299124.00",
    "errors": [{"customer_id": "019a6d3e-7c4a-7000-8000-0000000000c1", "error": "numeric field overflow"}],
    "started_at": "2026-12-01T06:00:00Z",
    "finished_at": null
}))]
pub struct InvoiceRunView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub as_of: DateTime<Utc>,
    pub status: RunStatus,
    /// Customers with charges to invoice when the run started.
    pub customers_total: i32,
    /// Customers taken so far (invoiced, with nothing left to invoice, or failed).
    pub customers_done: i32,
    pub customers_failed: i32,
    pub invoices_issued: i32,
    /// The sums of the invoices issued.
    #[schema(example = "249270.00")]
    pub total_ht: DecimalString,
    #[schema(example = "49854.00")]
    pub total_vat: DecimalString,
    #[schema(example = "299124.00")]
    pub total_ttc: DecimalString,
    /// The customers that failed, by id (the first 100).
    pub errors: Vec<RunError>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How far a run is, after each batch of customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub customers_done: i32,
    pub customers_total: i32,
    pub invoices_issued: i32,
}

impl Progress {
    /// The CLI's line when it does not write to a terminal.
    pub fn line(&self) -> String {
        format!(
            "invoicing: {}/{} customers, {} invoices",
            self.customers_done, self.customers_total, self.invoices_issued
        )
    }
}

/// `error` cut to what the run keeps, on a character boundary.
pub fn error_text(error: &str) -> String {
    let error = error.trim();
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => error[..at].to_string(),
        None if error.is_empty() => "unknown error".to_string(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_names_customers_and_invoices() {
        let p = Progress {
            customers_done: 1200,
            customers_total: 10000,
            invoices_issued: 1187,
        };
        assert_eq!(p.line(), "invoicing: 1200/10000 customers, 1187 invoices");
    }

    #[test]
    fn error_texts_fit_their_column() {
        let long = "é".repeat(MAX_ERROR_CHARS + 5);
        assert_eq!(error_text(&long).chars().count(), MAX_ERROR_CHARS);
        assert_eq!(error_text("  overflow \n"), "overflow");
        assert_eq!(error_text(""), "unknown error");
    }
}
