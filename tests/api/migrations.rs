//! The migration to the ledger functions (2026-11-24-000006) on a database holding data
//! written under the per-row triggers of the previous schema, forward and back.

use chrono::{Duration, Utc};
use diesel::sql_types::Text;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::MigrationHarness;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use uuid::Uuid;

use grandlivre::db::MIGRATIONS;
use grandlivre::ledger::store::{self, NewAccount};
use grandlivre::ledger::{
    AccountId, HoldId, HoldStatus, LedgerError, NewHold, NewTransaction, Posting, Side,
    TransactionId,
};
use grandlivre::money::{Amount, Unit};

use crate::helpers::TestDb;

/// The last migration of the per-row trigger design.
const V5: &str = "20261123000005";
/// The migration under test: the ledger functions.
const V6: &str = "20261124000006";

/// Runs `f` on a blocking connection as `url` (the migration harness is synchronous).
async fn with_harness<T, F>(url: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> T + Send + 'static,
{
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .expect("connect to run migrations");
        f(&mut conn)
    })
    .await
    .expect("migration thread")
}

/// The migrations up to and including `V5`, one at a time.
async fn migrate_to_v5(owner_url: &str) {
    with_harness(owner_url, |c| {
        for _ in 0..100 {
            let ran = c
                .run_next_migration(MIGRATIONS)
                .expect("run the next migration")
                .to_string();
            assert!(ran.as_str() <= V5, "ran {ran}, past {V5}");
            if ran == V5 {
                return;
            }
        }
        panic!("{V5} never ran");
    })
    .await
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// One text column `line` per row, in the query's order.
async fn lines(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<Line>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|l| l.line)
        .collect()
}

/// Every balance row, as text.
async fn balance_rows(conn: &mut AsyncPgConnection) -> Vec<String> {
    lines(
        conn,
        "SELECT concat_ws(' ', account_id, unit, unit_scale, normal_side, no_overdraft,
                          posted_debits, posted_credits, pending_debits, pending_credits) AS line
           FROM balances ORDER BY account_id",
    )
    .await
}

/// What a migration may change in the schema: triggers, functions (source digest,
/// SECURITY DEFINER, settings, owner, privileges), constraints (with their deferrability),
/// indexes, the privileges on tables and sequences, and the default privileges. ACLs are
/// compared as sorted lists, the default one spelled out (no ACL = the owner's default).
async fn schema_fingerprint(conn: &mut AsyncPgConnection) -> Vec<String> {
    lines(
        conn,
        "SELECT concat_ws(' ', 'trigger', t.tgrelid::regclass, t.tgname, t.tgtype, t.tgenabled,
                          t.tgdeferrable, t.tginitdeferred, t.tgfoid::regprocedure,
                          pg_get_triggerdef(t.oid)) AS line
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'function', p.oid::regprocedure, md5(p.prosrc),
                          'secdef=' || p.prosecdef, 'volatile=' || p.provolatile::text,
                          'config=' || coalesce(array_to_string(p.proconfig, ','), ''),
                          'owner=' || pg_get_userbyid(p.proowner),
                          'acl=' || (SELECT string_agg(a::text, ',' ORDER BY a::text)
                                       FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) a))
           FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'constraint', c.conrelid::regclass, c.conname, c.contype,
                          'deferrable=' || c.condeferrable, 'deferred=' || c.condeferred,
                          pg_get_constraintdef(c.oid))
           FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'index', indexname, indexdef)
           FROM pg_indexes WHERE schemaname = 'public'
         UNION ALL
         SELECT concat_ws(' ', 'relation', c.oid::regclass, c.relkind,
                          'owner=' || pg_get_userbyid(c.relowner),
                          'acl=' || (SELECT string_agg(a::text, ',' ORDER BY a::text)
                                       FROM unnest(coalesce(c.relacl, acldefault(
                                           (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\",
                                           c.relowner))) a))
           FROM pg_class c
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
         UNION ALL
         SELECT concat_ws(' ', 'default acl', d.defaclrole::regrole, d.defaclnamespace,
                          d.defaclobjtype, d.defaclacl::text)
           FROM pg_default_acl d
         ORDER BY 1",
    )
    .await
}

#[track_caller]
fn assert_same(before: &[String], after: &[String], what: &str) {
    let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "{what}:\n  only before: {gone:#?}\n  only after: {new:#?}"
    );
}

async fn assert_verified(conn: &mut AsyncPgConnection, when: &str) {
    let report = store::verify(conn).await.expect("verify");
    assert!(
        report.mismatches.is_empty() && report.unbalanced_transactions.is_empty(),
        "{when}: {report:?}"
    );
    assert!(report.accounts_checked > 0 && report.transactions_checked > 0);
}

async fn balance(conn: &mut AsyncPgConnection, id: Uuid) -> grandlivre::ledger::BalanceView {
    store::get_account(conn, AccountId(id))
        .await
        .expect("read")
        .expect("exists")
        .balance
}

/// Ids of what the v5 data holds.
struct V5Data {
    customer: Uuid,
    wallet_a: Uuid,
    wallet_b: Uuid,
    issuer: Uuid,
    receivable: Uuid,
    ticket_wallet: Uuid,
    /// An invoice: 411 against revenue (706) and VAT (44571), three postings.
    invoice: Uuid,
    /// Pending, 20.00 of wallet A, for the issuer, due in a week.
    pending_a: Uuid,
    /// Pending, 5.00 of wallet B, due in a week.
    pending_b: Uuid,
    /// Pending, 2 tickets, due in an hour.
    pending_tickets: Uuid,
    /// 15.00 of wallet A captured for 12.00.
    captured: Uuid,
    /// 8.00 of wallet B voided.
    voided: Uuid,
}

/// One posting as SQL literals: account, side, amount, unit.
type SqlPosting<'a> = (Uuid, &'a str, &'a str, &'a str);

/// A call of the v5 `ledger_post` (a plain function then: the triggers did the rest).
fn v5_post(
    tx: Uuid,
    kind: &str,
    key: &str,
    reverses: Option<Uuid>,
    postings: &[SqlPosting],
) -> String {
    let array =
        |f: fn(&SqlPosting) -> String| postings.iter().map(f).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT ledger_post('{tx}', '{kind}', '{key}', '\\x01', now(), NULL, '{{}}', {}, \
         ARRAY[{}]::uuid[], ARRAY[{}], ARRAY[{}]::numeric[], ARRAY[{}]);\n",
        reverses.map_or("NULL".into(), |r| format!("'{r}'")),
        array(|l| format!("'{}'", l.0)),
        array(|l| format!("'{}'", l.1)),
        array(|l| l.2.to_string()),
        array(|l| format!("'{}'", l.3)),
    )
}

/// Writes the ledger the way the trigger design let the schema owner write it: accounts
/// (whose balance row a trigger creates), transactions through the v5 `ledger_post` and
/// by plain INSERTs, a reversal, holds placed by INSERT, one captured (UPDATE of the hold
/// and its capture transaction in one database transaction) and one voided.
async fn write_v5_data(owner: &mut AsyncPgConnection) -> V5Data {
    let id = Uuid::now_v7;
    let d = V5Data {
        customer: id(),
        wallet_a: id(),
        wallet_b: id(),
        issuer: id(),
        receivable: id(),
        ticket_wallet: id(),
        invoice: id(),
        pending_a: id(),
        pending_b: id(),
        pending_tickets: id(),
        captured: id(),
        voided: id(),
    };
    let (ticket_sold, ticket_used) = (id(), id());
    let (grant_a, grant_b, moved, reversal, capture_tx) = (id(), id(), id(), id(), id());
    let V5Data {
        customer: c,
        wallet_a: a,
        wallet_b: b,
        issuer: i,
        receivable: r,
        ticket_wallet: tw,
        invoice: inv,
        pending_a: h1,
        pending_b: h2,
        pending_tickets: h5,
        captured: h3,
        voided: h4,
    } = d;
    let mut sql = format!(
        "INSERT INTO accounts (id, code, name, unit, customer_id, normal_side, no_overdraft) VALUES
           ('{a}', 'CREDIT-A', 'Wallet A', 'CREDIT', '{c}', 'credit', true),
           ('{b}', 'CREDIT-B', 'Wallet B', 'CREDIT', '{c}', 'credit', true),
           ('{i}', 'CREDIT-ISSUED', 'Credits issued', 'CREDIT', '{c}', 'debit', false),
           ('{r}', '411', 'Receivable', 'EUR', '{c}', 'debit', false),
           ('{tw}', 'TICKET-WALLET', 'Tickets', 'TICKET', '{c}', 'credit', true),
           ('{ticket_sold}', 'TICKET-SOLD', 'Tickets sold', 'TICKET', '{c}', 'debit', false),
           ('{ticket_used}', 'TICKET-USED', 'Tickets used', 'TICKET', '{c}', 'credit', false);\n"
    );
    sql += &v5_post(
        grant_a,
        "credit.grant",
        "v5-grant-a",
        None,
        &[
            (i, "debit", "100.00", "CREDIT"),
            (a, "credit", "100.00", "CREDIT"),
        ],
    );
    // the trigger design accepted plain INSERTs (balanced at commit)
    sql += &format!(
        "BEGIN;
         INSERT INTO transactions (id, kind, idempotency_key, request_hash, effective_at)
              VALUES ('{grant_b}', 'credit.grant', 'v5-grant-b', '\\x02', now());
         INSERT INTO postings (transaction_id, account_id, side, amount, unit) VALUES
              ('{grant_b}', '{i}', 'debit', 50.00, 'CREDIT'),
              ('{grant_b}', '{b}', 'credit', 50.00, 'CREDIT');
         COMMIT;\n"
    );
    sql += &v5_post(
        inv,
        "invoice",
        "v5-invoice",
        None,
        &[
            (r, "debit", "120.00", "EUR"),
            (
                Uuid::parse_str("00000000-0000-4000-8000-000000000706").unwrap(),
                "credit",
                "100.00",
                "EUR",
            ),
            (
                Uuid::parse_str("00000000-0000-4000-8000-000000044571").unwrap(),
                "credit",
                "20.00",
                "EUR",
            ),
        ],
    );
    sql += &v5_post(
        Uuid::now_v7(),
        "ticket.purchase",
        "v5-tickets",
        None,
        &[
            (ticket_sold, "debit", "10", "TICKET"),
            (tw, "credit", "10", "TICKET"),
        ],
    );
    sql += &v5_post(
        moved,
        "test.move",
        "v5-move",
        None,
        &[
            (a, "debit", "10.00", "CREDIT"),
            (b, "credit", "10.00", "CREDIT"),
        ],
    );
    sql += &v5_post(
        reversal,
        "reversal",
        "v5-reversal",
        Some(moved),
        &[
            (a, "credit", "10.00", "CREDIT"),
            (b, "debit", "10.00", "CREDIT"),
        ],
    );
    let hold = |h: Uuid,
                key: &str,
                debit: Uuid,
                credit: Uuid,
                unit: &str,
                amount: &str,
                due: &str| {
        format!(
            "INSERT INTO holds (id, idempotency_key, request_hash, debit_account_id, credit_account_id, unit, amount, expires_at)
             VALUES ('{h}', '{key}', '\\x03', '{debit}', '{credit}', '{unit}', {amount}, now() + interval '{due}');\n"
        )
    };
    sql += &hold(h1, "v5-h1", a, i, "CREDIT", "20.00", "7 days");
    sql += &hold(h2, "v5-h2", b, i, "CREDIT", "5.00", "7 days");
    sql += &hold(h3, "v5-h3", a, i, "CREDIT", "15.00", "7 days");
    sql += &hold(h4, "v5-h4", b, i, "CREDIT", "8.00", "7 days");
    sql += &hold(h5, "v5-h5", tw, ticket_used, "TICKET", "2", "1 hour");
    // a capture in v5: the hold resolved and its transaction posted, in one database
    // transaction (the foreign key to the capture transaction is checked at commit)
    let capture = v5_post(
        capture_tx,
        "hold.capture",
        &format!("capture:{h3}"),
        None,
        &[
            (a, "debit", "12.00", "CREDIT"),
            (i, "credit", "12.00", "CREDIT"),
        ],
    );
    sql += &format!(
        "BEGIN;
         UPDATE holds SET status = 'captured', captured_amount = 12.00,
                capture_transaction_id = '{capture_tx}', resolved_at = now()
          WHERE id = '{h3}';
         {capture}
         COMMIT;
         UPDATE holds SET status = 'voided', resolved_at = now() WHERE id = '{h4}';\n"
    );
    owner.batch_execute(&sql).await.expect("write the v5 data");
    d
}

#[tokio::test]
async fn ledger_functions_migrate_v5_data_forward_and_back() {
    let db = TestDb::empty().await;
    migrate_to_v5(&db.owner_url).await;
    let mut owner = db.owner_conn().await;
    let v5_schema = schema_fingerprint(&mut owner).await;
    assert!(
        v5_schema
            .iter()
            .any(|l| l.starts_with("trigger postings postings_apply")),
        "the v5 triggers are there"
    );

    let d = write_v5_data(&mut owner).await;
    assert_verified(&mut owner, "v5 data, under v5").await;
    let a = balance(&mut owner, d.wallet_a).await;
    // 100 granted, 10 moved and moved back, 12 captured; 20 held
    assert_eq!((a.posted.0, a.available.0), (dec!(88), dec!(68)));
    let v5_balances = balance_rows(&mut owner).await;

    // forward: balances untouched, the ledger still consistent
    let ran = with_harness(&db.owner_url, |c| {
        c.run_next_migration(MIGRATIONS)
            .expect("migrate to v6")
            .to_string()
    })
    .await;
    assert_eq!(ran, V6);
    let v6_schema = schema_fingerprint(&mut owner).await;
    assert!(v6_schema != v5_schema, "the fingerprint sees the migration");
    assert_eq!(balance_rows(&mut owner).await, v5_balances);
    let mut service = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect as the service");
    assert_verified(&mut service, "v5 data, under v6").await;

    // the v6 API, as the service, on what v5 wrote
    let now = Utc::now();
    let credits = |v: Decimal| Amount::new(v, Unit::Credit).expect("amount");
    let (hold, posted) = store::capture(
        &mut service,
        HoldId(d.pending_a),
        Some(credits(dec!(7.5))),
        now,
    )
    .await
    .expect("capture an old pending hold");
    assert_eq!(hold.status, HoldStatus::Captured);
    let capture = store::get_transaction(&mut service, posted.id)
        .await
        .expect("read")
        .expect("posted");
    assert_eq!(capture.postings.len(), 2);
    assert!(matches!(
        store::capture(&mut service, HoldId(d.captured), None, now).await,
        Err(LedgerError::HoldNotPending(_, HoldStatus::Captured))
    ));
    assert!(matches!(
        store::void(&mut service, HoldId(d.voided), now).await,
        Err(LedgerError::HoldNotPending(_, HoldStatus::Voided))
    ));
    store::post(
        &mut service,
        &NewTransaction::new(
            "v6-move",
            "test.move",
            vec![
                Posting::debit(AccountId(d.wallet_b), credits(dec!(3))),
                Posting::credit(AccountId(d.wallet_a), credits(dec!(3))),
            ],
        )
        .expect("balanced"),
    )
    .await
    .expect("post");
    assert!(matches!(
        store::post(
            &mut service,
            &NewTransaction::new(
                "v6-overdraft",
                "test.move",
                vec![
                    Posting::debit(AccountId(d.wallet_b), credits(dec!(42.01))),
                    Posting::credit(AccountId(d.wallet_a), credits(dec!(42.01))),
                ],
            )
            .expect("balanced"),
        )
        .await,
        Err(LedgerError::InsufficientFunds)
    ));
    store::reverse(&mut service, TransactionId(d.invoice), None, now)
        .await
        .expect("reverse an old transaction");
    assert!(matches!(
        store::reverse(&mut service, TransactionId(d.invoice), None, now).await,
        Ok(p) if p.replayed
    ));
    assert_eq!(
        store::expire_holds(&mut service, now + Duration::hours(2))
            .await
            .expect("expire"),
        1,
        "the old ticket hold is due"
    );
    let (new_hold, _) = store::hold(
        &mut service,
        &NewHold::new(
            "v6-hold",
            AccountId(d.wallet_a),
            AccountId(d.issuer),
            credits(dec!(30)),
            now + Duration::days(1),
        )
        .expect("hold"),
        now,
    )
    .await
    .expect("hold");
    let existing = store::ensure_account(
        &service,
        &NewAccount {
            code: "CREDIT-A".into(),
            name: "Wallet A".into(),
            unit: Unit::Credit,
            customer_id: Some(d.customer),
            normal_side: Side::Credit,
            no_overdraft: true,
        },
    )
    .await
    .expect("find an old account");
    assert_eq!(existing.id, AccountId(d.wallet_a));

    let a = balance(&mut service, d.wallet_a).await;
    // 88 - 7.50 captured + 3 received; 30 held by the new hold
    assert_eq!(
        (a.posted.0, a.pending_debits.0, a.available.0),
        (dec!(83.5), dec!(30), dec!(53.5))
    );
    let b = balance(&mut service, d.wallet_b).await;
    assert_eq!((b.posted.0, b.available.0), (dec!(47), dec!(42)));
    let issuer = balance(&mut service, d.issuer).await;
    // 150 issued, 12 + 7.50 captured back; 5 + 30 held for it
    assert_eq!(
        (issuer.posted.0, issuer.pending_credits.0),
        (dec!(130.5), dec!(35))
    );
    assert_eq!(balance(&mut service, d.receivable).await.posted.0, dec!(0));
    assert_eq!(
        balance(&mut service, d.ticket_wallet).await.available.0,
        dec!(10)
    );
    assert_verified(&mut service, "v6 writes on v5 data").await;
    drop(service);

    // back: the schema of v5 again, and the triggers maintain what v6 wrote
    let reverted = with_harness(&db.owner_url, |c| {
        c.revert_last_migration(MIGRATIONS)
            .expect("revert v6")
            .to_string()
    })
    .await;
    assert_eq!(reverted, V6);
    assert_same(
        &v5_schema,
        &schema_fingerprint(&mut owner).await,
        "schema after down.sql vs v5",
    );
    assert_verified(&mut owner, "after down.sql").await;
    let before = balance(&mut owner, d.wallet_a).await;
    owner
        .batch_execute(&format!(
            "SELECT ledger_post('{}', 'test.move', 'v5-again', '\\x04', now(), NULL, '{{}}', NULL,
                    ARRAY['{}', '{}']::uuid[], ARRAY['debit', 'credit'],
                    ARRAY[1.25, 1.25]::numeric[], ARRAY['CREDIT', 'CREDIT']);
             UPDATE holds SET status = 'voided', resolved_at = now() WHERE id = '{}';",
            Uuid::now_v7(),
            d.wallet_a,
            d.wallet_b,
            new_hold.id
        ))
        .await
        .expect("write through the v5 triggers");
    let after = balance(&mut owner, d.wallet_a).await;
    assert_eq!(
        after.posted.0,
        before.posted.0 - dec!(1.25),
        "postings_apply is back"
    );
    assert_eq!(after.pending_debits.0, dec!(0), "holds_apply is back");
    let unbalanced = owner
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO transactions (id, kind, idempotency_key, request_hash, effective_at)
                  VALUES ('{0}', 'test.move', 'v5-unbalanced', '\\x05', now());
             INSERT INTO postings (transaction_id, account_id, side, amount, unit)
                  VALUES ('{0}', '{1}', 'debit', 1, 'CREDIT'), ('{0}', '{2}', 'credit', 2, 'CREDIT');
             COMMIT;",
            Uuid::now_v7(),
            d.issuer,
            d.wallet_a
        ))
        .await
        .expect_err("an unbalanced transaction")
        .to_string();
    assert!(unbalanced.contains("does not balance"), "{unbalanced}");
    let _ = owner.batch_execute("ROLLBACK").await;
    assert_verified(&mut owner, "v5 writes after down.sql").await;

    // and forward again: the same v6 schema
    with_harness(&db.owner_url, |c| {
        c.run_next_migration(MIGRATIONS)
            .expect("migrate to v6 again");
    })
    .await;
    assert_same(
        &v6_schema,
        &schema_fingerprint(&mut owner).await,
        "schema after up, down, up",
    );
    assert_verified(&mut owner, "after up, down, up").await;

    // the later migrations go forward and back to this schema too
    with_harness(&db.owner_url, |c| {
        c.run_pending_migrations(MIGRATIONS)
            .expect("migrate to the latest");
        while c
            .applied_migrations()
            .expect("applied")
            .iter()
            .any(|v| v.to_string().as_str() > V6)
        {
            c.revert_last_migration(MIGRATIONS)
                .expect("revert a later migration");
        }
    })
    .await;
    assert_same(
        &v6_schema,
        &schema_fingerprint(&mut owner).await,
        "schema after the later migrations' up and down",
    );
    assert_verified(&mut owner, "after the later migrations' up and down").await;
}
