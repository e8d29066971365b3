//! Reads the ledger for the FEC ([`crate::ledger::fec`]): the EUR postings of the
//! transactions effective between two Paris dates, a page of transactions at a time in one
//! read-only snapshot, so that a year of postings never sits in memory and the file is one
//! consistent state of the books, however long the reader takes.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::LedgerError;
use crate::calendar::{paris_date, paris_midnight};
use crate::ledger::fec::{self, FecLine, Journal};
use crate::schema::{credit_notes, invoices, payments, refunds};

/// Transactions per page.
const PAGE: i64 = 500;

/// An export under way: its own connection (off any pool, so that a reader who goes away
/// mid-file closes it, and its snapshot with it), where it stands, and how many entries it
/// numbered.
pub struct FecExport {
    conn: AsyncPgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    after: (DateTime<Utc>, Uuid),
    entries: u64,
    header_sent: bool,
}

/// Starts the export of the transactions effective from `from` to `to` (Paris dates, both
/// included) on `conn`, in a read-only snapshot.
pub async fn open(
    mut conn: AsyncPgConnection,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<FecExport, LedgerError> {
    let until = to
        .succ_opt()
        .map(paris_midnight)
        .ok_or_else(|| LedgerError::Invalid {
            field: "to",
            reason: "out of range".into(),
        })?;
    diesel::sql_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await?;
    let from = paris_midnight(from);
    Ok(FecExport {
        conn,
        from,
        until,
        after: (from, Uuid::nil()),
        entries: 0,
        header_sent: false,
    })
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    idempotency_key: String,
    #[diesel(sql_type = Timestamptz)]
    effective_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = Text)]
    side: String,
    #[diesel(sql_type = Numeric)]
    amount: Decimal,
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    customer_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    legal_name: Option<String>,
}

/// The document behind an entry: its reference and date.
type Piece = (String, NaiveDate);

impl FecExport {
    /// The next part of the file (the header, then a page of entries), ISO 8859-15; `None`
    /// at the end, when the snapshot is closed.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, LedgerError> {
        if !self.header_sent {
            self.header_sent = true;
            return Ok(Some(fec::encode(&fec::header())));
        }
        let rows: Vec<Row> = diesel::sql_query(
            "WITH page AS (
                 SELECT t.id, t.kind, t.idempotency_key, t.effective_at, t.created_at, t.description
                   FROM transactions t
                  WHERE t.effective_at >= $1 AND t.effective_at < $2
                    AND (t.effective_at, t.id) > ($3, $4)
                    AND EXISTS (SELECT 1 FROM postings p WHERE p.transaction_id = t.id AND p.unit = 'EUR')
                  ORDER BY t.effective_at, t.id
                  LIMIT $5)
             SELECT page.*, p.side, p.amount, a.code, a.name, a.customer_id, c.legal_name
               FROM page
               JOIN postings p ON p.transaction_id = page.id AND p.unit = 'EUR'
               JOIN accounts a ON a.id = p.account_id
               LEFT JOIN customers c ON c.id = a.customer_id
              ORDER BY page.effective_at, page.id, p.id",
        )
        .bind::<Timestamptz, _>(self.from)
        .bind::<Timestamptz, _>(self.until)
        .bind::<Timestamptz, _>(self.after.0)
        .bind::<SqlUuid, _>(self.after.1)
        .bind::<BigInt, _>(PAGE)
        .load(&mut self.conn)
        .await?;
        let Some(last) = rows.last() else {
            diesel::sql_query("COMMIT").execute(&mut self.conn).await?;
            return Ok(None);
        };
        self.after = (last.effective_at, last.id);
        let pieces = pieces(&mut self.conn, &rows).await?;
        let mut out = String::with_capacity(rows.len() * 160);
        let mut current = None;
        for r in &rows {
            if current != Some(r.id) {
                current = Some(r.id);
                self.entries += 1;
            }
            let entry_date = paris_date(r.effective_at);
            let (piece_ref, piece_date) = match pieces.get(&r.id) {
                Some((number, date)) => (number.clone(), *date),
                None => (r.id.to_string(), entry_date),
            };
            let described = r.description.as_deref().unwrap_or(&r.kind);
            let label = match pieces.contains_key(&r.id) && !described.contains(&piece_ref) {
                true => format!("{described} {piece_ref}"),
                false => described.to_string(),
            };
            let aux_num = r.customer_id.map(|c| c.simple().to_string());
            let auxiliary = match (&aux_num, fec::auxiliary(&r.code)) {
                (Some(num), true) => Some((num.as_str(), r.legal_name.as_deref().unwrap_or(""))),
                _ => None,
            };
            let (debit, credit) = match r.side.as_str() {
                "debit" => (r.amount, Decimal::ZERO),
                _ => (Decimal::ZERO, r.amount),
            };
            FecLine {
                journal: Journal::of_kind(&r.kind),
                entry: self.entries,
                entry_date,
                account: &r.code,
                account_label: &fec::account_label(&r.code, &r.name),
                auxiliary,
                piece_ref: &piece_ref,
                piece_date,
                label: &label,
                debit,
                credit,
                valid_date: paris_date(r.created_at),
            }
            .render(&mut out);
        }
        Ok(Some(fec::encode(&out)))
    }

    /// The file as a stream of chunks (what `GET /v1/ledger/fec` sends and `export fec`
    /// writes).
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, LedgerError>> + 'static {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut export = state?;
            match export.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(export))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// The documents behind the page's transactions, found from their keys: an invoice (and
/// the credit balance applied to it), a credit note, a payment, a refund.
async fn pieces(
    conn: &mut AsyncPgConnection,
    rows: &[Row],
) -> Result<HashMap<Uuid, Piece>, LedgerError> {
    let mut of: HashMap<&str, Vec<(Uuid, Uuid)>> = HashMap::new();
    for r in rows {
        let mut parts = r.idempotency_key.splitn(3, ':');
        let (Some(prefix), Some(doc)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(doc) = Uuid::parse_str(doc) {
            of.entry(prefix).or_default().push((r.id, doc));
        }
    }
    let ids = |prefixes: &[&str]| -> Vec<Uuid> {
        prefixes
            .iter()
            .flat_map(|p| of.get(p).into_iter().flatten().map(|(_, d)| *d))
            .collect()
    };
    let mut docs: HashMap<Uuid, Piece> = HashMap::new();
    docs.extend(
        invoices::table
            .filter(invoices::id.eq_any(ids(&["invoice", "credit-balance"])))
            .select((invoices::id, invoices::number, invoices::issued_on))
            .load::<(Uuid, String, NaiveDate)>(conn)
            .await?
            .into_iter()
            .map(|(id, n, d)| (id, (n, d))),
    );
    docs.extend(
        credit_notes::table
            .filter(credit_notes::id.eq_any(ids(&["credit_note"])))
            .select((
                credit_notes::id,
                credit_notes::number,
                credit_notes::issued_on,
            ))
            .load::<(Uuid, String, NaiveDate)>(conn)
            .await?
            .into_iter()
            .map(|(id, n, d)| (id, (n, d))),
    );
    docs.extend(
        payments::table
            .filter(payments::id.eq_any(ids(&["payment"])))
            .select((payments::id, payments::reference, payments::value_date))
            .load::<(Uuid, String, NaiveDate)>(conn)
            .await?
            .into_iter()
            .map(|(id, n, d)| (id, (n, d))),
    );
    docs.extend(
        refunds::table
            .filter(refunds::id.eq_any(ids(&["refund"])))
            .select((refunds::id, refunds::reference, refunds::value_date))
            .load::<(Uuid, String, NaiveDate)>(conn)
            .await?
            .into_iter()
            .map(|(id, n, d)| (id, (n, d))),
    );
    Ok(of
        .values()
        .flatten()
        .filter_map(|(tx, doc)| docs.get(doc).map(|p| (*tx, p.clone())))
        .collect())
}
