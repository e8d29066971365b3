//! The ledger checked against itself: stored balances recomputed from postings and
//! pending holds, and every transaction balanced per unit.

use super::*;

#[derive(QueryableByName)]
struct MismatchRow {
    #[diesel(sql_type = SqlUuid)]
    account_id: Uuid,
    #[diesel(sql_type = Text)]
    field: String,
    #[diesel(sql_type = Numeric)]
    stored: Decimal,
    #[diesel(sql_type = Numeric)]
    recomputed: Decimal,
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    accounts: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    transactions: i64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Recomputes every balance from postings and pending holds and every transaction's
/// balance per unit, in one snapshot. Empty lists mean the ledger is consistent.
pub async fn verify(conn: &mut AsyncPgConnection) -> Result<VerifyReport, LedgerError> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |c| {
                let mismatches: Vec<MismatchRow> = diesel::sql_query(
                    "WITH p AS (
                       SELECT account_id,
                              sum(amount) FILTER (WHERE side = 'debit') AS d,
                              sum(amount) FILTER (WHERE side = 'credit') AS c
                       FROM postings GROUP BY account_id),
                     h AS (
                       SELECT account_id, sum(d) AS d, sum(c) AS c FROM (
                         SELECT debit_account_id AS account_id, amount AS d, 0 AS c FROM holds WHERE status = 'pending'
                         UNION ALL
                         SELECT credit_account_id, 0, amount FROM holds WHERE status = 'pending') x
                       GROUP BY account_id)
                     SELECT b.account_id, f.field, f.stored, f.recomputed
                     FROM balances b
                     LEFT JOIN p USING (account_id)
                     LEFT JOIN h USING (account_id)
                     CROSS JOIN LATERAL (VALUES
                       ('posted_debits', b.posted_debits, coalesce(p.d, 0)),
                       ('posted_credits', b.posted_credits, coalesce(p.c, 0)),
                       ('pending_debits', b.pending_debits, coalesce(h.d, 0)),
                       ('pending_credits', b.pending_credits, coalesce(h.c, 0))) AS f (field, stored, recomputed)
                     WHERE f.stored <> f.recomputed
                     ORDER BY b.account_id, f.field",
                )
                .load(c)
                .await?;
                let unbalanced: Vec<IdRow> = diesel::sql_query(
                    "SELECT id FROM (
                       SELECT transaction_id AS id FROM postings GROUP BY transaction_id, unit
                       HAVING sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0
                       UNION
                       SELECT t.id FROM transactions t
                       WHERE (SELECT count(*) FROM postings p WHERE p.transaction_id = t.id) < 2
                       UNION
                       -- a posting of no transaction, or on no account
                       SELECT p.transaction_id FROM postings p
                       WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = p.transaction_id)
                          OR NOT EXISTS (SELECT 1 FROM balances b WHERE b.account_id = p.account_id)) u
                     ORDER BY id",
                )
                .load(c)
                .await?;
                let counts: Counts = diesel::sql_query(
                    "SELECT (SELECT count(*) FROM balances) AS accounts, (SELECT count(*) FROM transactions) AS transactions",
                )
                .get_result(c)
                .await?;
                Ok::<_, LedgerError>(VerifyReport {
                    accounts_checked: counts.accounts,
                    transactions_checked: counts.transactions,
                    mismatches: mismatches
                        .into_iter()
                        .map(|m| BalanceMismatch {
                            account_id: AccountId(m.account_id),
                            field: m.field,
                            stored: DecimalString(m.stored.normalize()),
                            recomputed: DecimalString(m.recomputed.normalize()),
                        })
                        .collect(),
                    unbalanced_transactions: unbalanced.into_iter().map(|r| TransactionId(r.id)).collect(),
                })
        })
        .await
}
