//! The ledger's Rust API and the invariants PostgreSQL enforces on its own.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use uuid::Uuid;

use grandlivre::ledger::store::{self, NewAccount};
use grandlivre::ledger::{
    AccountId, HoldStatus, LedgerError, NewHold, NewTransaction, Posting, Side,
};
use grandlivre::money::{Amount, Unit};

use crate::helpers::TestDb;

fn credits(v: Decimal) -> Amount {
    Amount::new(v, Unit::Credit).expect("amount")
}

/// A customer's credit wallet (no overdraft) and the platform account that issues credits.
async fn wallet_and_issuer(conn: &mut AsyncPgConnection) -> (AccountId, AccountId) {
    let customer = Uuid::now_v7();
    let wallet = store::ensure_account(
        conn,
        &NewAccount {
            code: "CREDIT-WALLET".into(),
            name: "Service credits".into(),
            unit: Unit::Credit,
            customer_id: Some(customer),
            normal_side: Side::Credit,
            no_overdraft: true,
        },
    )
    .await
    .expect("wallet");
    let issuer = store::ensure_account(
        conn,
        &NewAccount {
            code: "CREDIT-ISSUED".into(),
            name: "Credits issued".into(),
            unit: Unit::Credit,
            customer_id: Some(customer),
            normal_side: Side::Debit,
            no_overdraft: false,
        },
    )
    .await
    .expect("issuer");
    (wallet.id, issuer.id)
}

fn transfer(key: &str, from: AccountId, to: AccountId, amount: Decimal) -> NewTransaction {
    NewTransaction::new(
        key,
        "test.transfer",
        vec![
            Posting::debit(from, credits(amount)),
            Posting::credit(to, credits(amount)),
        ],
    )
    .expect("balanced")
}

async fn available(conn: &mut AsyncPgConnection, account: AccountId) -> Decimal {
    store::get_account(conn, account)
        .await
        .expect("read")
        .expect("exists")
        .balance
        .available
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_consumers_take_exactly_what_is_available() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let (wallet, issuer) = wallet_and_issuer(&mut conn).await;
    store::post(&mut conn, &transfer("grant", issuer, wallet, dec!(10)))
        .await
        .expect("grant");
    let pool = db.pool(32);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("connection");
                store::post(
                    &mut conn,
                    &transfer(&format!("consume-{i}"), wallet, issuer, dec!(1)),
                )
                .await
            })
        })
        .collect();
    let mut consumed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => consumed += 1,
            Err(LedgerError::InsufficientFunds) => {}
            Err(other) => panic!("a caller saw {other:?}"),
        }
    }
    assert_eq!(consumed, 10, "exactly the available amount is consumed");
    assert_eq!(available(&mut conn, wallet).await, dec!(0));
    assert!(store::verify(&mut conn)
        .await
        .expect("verify")
        .mismatches
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_holds_never_overdraw_and_replays_are_idempotent() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let (wallet, issuer) = wallet_and_issuer(&mut conn).await;
    store::post(&mut conn, &transfer("grant", issuer, wallet, dec!(3)))
        .await
        .expect("grant");
    let pool = db.pool(16);
    let expires = Utc::now() + Duration::days(7);
    // 16 distinct holds and, for each, a replay of the same key: 3 distinct holds succeed
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("connection");
                let hold = NewHold::new(
                    format!("hold-{}", i % 16),
                    wallet,
                    issuer,
                    credits(dec!(1)),
                    expires,
                )
                .expect("hold");
                store::hold(&mut conn, &hold, Utc::now())
                    .await
                    .map(|(h, _)| h.id)
            })
        })
        .collect();
    let mut held = std::collections::HashSet::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(id) => {
                held.insert(id);
            }
            Err(LedgerError::InsufficientFunds) => {}
            Err(other) => panic!("a caller saw {other:?}"),
        }
    }
    assert_eq!(held.len(), 3);
    assert_eq!(available(&mut conn, wallet).await, dec!(0));
}

#[tokio::test]
async fn holds_capture_in_part_void_and_expire() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let (wallet, issuer) = wallet_and_issuer(&mut conn).await;
    store::post(&mut conn, &transfer("grant", issuer, wallet, dec!(10)))
        .await
        .expect("grant");
    let now = Utc::now();
    let new = |key: &str, amount| {
        NewHold::new(
            key,
            wallet,
            issuer,
            credits(amount),
            now + Duration::days(7),
        )
        .expect("hold")
    };

    let (a, replayed) = store::hold(&mut conn, &new("a", dec!(4)), now)
        .await
        .expect("hold a");
    assert!(!replayed);
    let (again, replayed) = store::hold(&mut conn, &new("a", dec!(4)), now)
        .await
        .expect("replay");
    assert!(replayed && again.id == a.id);
    assert!(matches!(
        store::hold(&mut conn, &new("a", dec!(5)), now).await,
        Err(LedgerError::IdempotencyConflict)
    ));
    assert_eq!(
        available(&mut conn, wallet).await,
        dec!(6),
        "pending counts against the balance"
    );
    assert!(matches!(
        store::hold(&mut conn, &new("big", dec!(7)), now).await,
        Err(LedgerError::InsufficientFunds)
    ));

    // capture less than held: the rest is released
    let (captured, posted) = store::capture(&mut conn, a.id, Some(credits(dec!(2.5))), now)
        .await
        .expect("capture");
    assert_eq!(captured.status, HoldStatus::Captured);
    assert_eq!(captured.captured_amount.map(|d| d.0), Some(dec!(2.5)));
    assert_eq!(available(&mut conn, wallet).await, dec!(7.5));
    let tx = store::get_transaction(&mut conn, posted.id)
        .await
        .expect("read")
        .expect("posted");
    assert_eq!(tx.kind, "hold.capture");
    assert!(matches!(
        store::capture(&mut conn, a.id, None, now).await,
        Err(LedgerError::HoldNotPending(_, HoldStatus::Captured))
    ));
    assert!(matches!(
        store::void(&mut conn, a.id, now).await,
        Err(LedgerError::HoldNotPending(_, HoldStatus::Captured))
    ));

    let (b, _) = store::hold(&mut conn, &new("b", dec!(3)), now)
        .await
        .expect("hold b");
    assert!(matches!(
        store::capture(&mut conn, b.id, Some(credits(dec!(3.01))), now).await,
        Err(LedgerError::CaptureExceedsHold { .. })
    ));
    assert_eq!(
        store::void(&mut conn, b.id, now)
            .await
            .expect("void")
            .status,
        HoldStatus::Voided
    );
    assert!(matches!(
        store::capture(&mut conn, b.id, None, now).await,
        Err(LedgerError::HoldNotPending(_, HoldStatus::Voided))
    ));
    assert_eq!(available(&mut conn, wallet).await, dec!(7.5));

    // expiry: nothing happens before the deadline, the hold is released at it
    let (c, _) = store::hold(&mut conn, &new("c", dec!(5)), now)
        .await
        .expect("hold c");
    assert_eq!(
        store::expire_holds(&mut conn, now + Duration::days(7) - Duration::seconds(1))
            .await
            .expect("expire"),
        0
    );
    assert_eq!(available(&mut conn, wallet).await, dec!(2.5));
    assert!(matches!(
        store::capture(&mut conn, c.id, None, now + Duration::days(7)).await,
        Err(LedgerError::HoldNotPending(_, HoldStatus::Expired))
    ));
    assert_eq!(
        store::expire_holds(&mut conn, now + Duration::days(7))
            .await
            .expect("expire"),
        1
    );
    assert_eq!(
        store::expire_holds(&mut conn, now + Duration::days(8))
            .await
            .expect("expire again"),
        0
    );
    assert_eq!(
        store::get_hold(&mut conn, c.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        HoldStatus::Expired
    );
    assert_eq!(available(&mut conn, wallet).await, dec!(7.5));
    // pending as of an instant while the hold was open
    let then = store::balance_as_of(&mut conn, wallet, now + Duration::days(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(then.pending_debits.0, dec!(5));
    assert!(store::verify(&mut conn)
        .await
        .expect("verify")
        .mismatches
        .is_empty());
}

/// The error text of a statement that must fail.
async fn refused(conn: &mut AsyncPgConnection, sql: &str) -> String {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .expect_err(sql)
        .to_string()
}

#[tokio::test]
async fn the_service_writes_the_ledger_only_through_its_functions() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let (wallet, issuer) = wallet_and_issuer(&mut conn).await;
    let grant = store::post(&mut conn, &transfer("grant", issuer, wallet, dec!(10)))
        .await
        .expect("grant");
    let tx = grant.id;
    // the service role: no direct write to any ledger table
    for sql in [
        format!(
            "INSERT INTO postings (transaction_id, account_id, side, amount, unit) \
             VALUES ('{tx}', '{wallet}', 'credit', 5, 'CREDIT')"
        ),
        format!("UPDATE balances SET posted_credits = 1000 WHERE account_id = '{wallet}'"),
        format!(
            "INSERT INTO transactions (id, kind, idempotency_key, request_hash, effective_at) \
             VALUES ('{}', 'sql', 'sql-1', '\\x00', now())",
            Uuid::now_v7()
        ),
        format!(
            "INSERT INTO holds (id, idempotency_key, request_hash, debit_account_id, credit_account_id, unit, amount, expires_at) \
             VALUES ('{}', 'h', '\\x00', '{wallet}', '{issuer}', 'CREDIT', 1, now() + interval '1 day')",
            Uuid::now_v7()
        ),
        "UPDATE holds SET status = 'voided'".to_string(),
        format!("INSERT INTO accounts (id, code, name, unit, normal_side) VALUES ('{}', 'X', 'x', 'EUR', 'debit')", Uuid::now_v7()),
        "UPDATE postings SET amount = 1".to_string(),
        "DELETE FROM transactions".to_string(),
        "TRUNCATE postings CASCADE".to_string(),
        format!("SELECT ledger_apply(ARRAY['{wallet}'::uuid], ARRAY['CREDIT'], ARRAY[1::numeric], ARRAY[0::numeric], ARRAY[1000::numeric], ARRAY[0::numeric], ARRAY[0::numeric])"),
    ] {
        let err = refused(&mut conn, &sql).await;
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    // the ledger functions refuse what breaks an invariant
    let post = |key: &str, amounts: [&str; 2]| {
        format!(
            "SELECT ledger_post('{}', 'sql', '{key}', '\\x00', NULL, NULL, '{{}}', NULL, \
             ARRAY['{issuer}', '{wallet}']::uuid[], ARRAY['debit', 'credit'], \
             ARRAY[{}, {}]::numeric[], ARRAY['CREDIT', 'CREDIT'])",
            Uuid::now_v7(),
            amounts[0],
            amounts[1]
        )
    };
    let err = refused(&mut conn, &post("sql-2", ["5", "4"])).await;
    assert!(err.contains("does not balance in CREDIT"), "{err}");
    let err = refused(&mut conn, &post("sql-3", ["1.001", "1.001"])).await;
    assert!(err.contains("fewer decimals than the amount"), "{err}");
    let err = refused(
        &mut conn,
        &format!(
            "SELECT ledger_post('{}', 'sql', 'sql-4', '\\x00', NULL, NULL, '{{}}', NULL, \
             ARRAY['{wallet}']::uuid[], ARRAY['credit'], ARRAY[1]::numeric[], ARRAY['CREDIT'])",
            Uuid::now_v7()
        ),
    )
    .await;
    assert!(err.contains("2 to 100 postings"), "{err}");
    assert_eq!(available(&mut conn, wallet).await, dec!(10));
    // the schema owner may write the tables, but postings and transactions stay
    // append-only, and balance rows and holds are never deleted
    let mut owner = db.owner_conn().await;
    for sql in [
        "UPDATE postings SET amount = 1",
        "DELETE FROM postings",
        "UPDATE transactions SET description = 'edited'",
        "DELETE FROM transactions",
        "TRUNCATE postings CASCADE",
        "DELETE FROM balances",
        "DELETE FROM holds",
    ] {
        // holds has no row yet: place one so that the DELETE has something to refuse
        if sql == "DELETE FROM holds" {
            store::hold(
                &mut conn,
                &NewHold::new(
                    "h",
                    wallet,
                    issuer,
                    credits(dec!(1)),
                    Utc::now() + Duration::days(1),
                )
                .expect("hold"),
                Utc::now(),
            )
            .await
            .expect("hold");
        }
        let err = refused(&mut owner, sql).await;
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let report = store::verify(&mut conn).await.expect("verify");
    assert!(report.mismatches.is_empty() && report.unbalanced_transactions.is_empty());
}

/// One step of a random ledger history.
#[derive(Debug, Clone)]
enum Op {
    /// Grant credits to wallet `w`.
    Grant(usize, u32),
    /// Move credits from wallet `from` to wallet `to`.
    Move(usize, usize, u32),
    /// Hold credits of wallet `w`.
    Hold(usize, u32),
    /// Capture the n-th hold (in part: numerator of tenths).
    Capture(usize, u32),
    Void(usize),
    /// Reverse the n-th posted transaction.
    Reverse(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..500u32).prop_map(|(w, c)| Op::Grant(w, c)),
        (0..3usize, 0..3usize, 1..500u32).prop_map(|(a, b, c)| Op::Move(a, b, c)),
        (0..3usize, 1..500u32).prop_map(|(w, c)| Op::Hold(w, c)),
        (0..8usize, 1..=10u32).prop_map(|(h, t)| Op::Capture(h, t)),
        (0..8usize).prop_map(Op::Void),
        (0..8usize).prop_map(Op::Reverse),
    ]
}

/// Runs `ops` through the Rust API and checks, after each, invariants 1, 3 and 4 against
/// an independent model of the balances.
async fn run_history(conn: &mut AsyncPgConnection, ops: Vec<Op>) {
    let customer = Uuid::now_v7();
    let mut wallets = Vec::new();
    for i in 0..3 {
        let a = store::ensure_account(
            conn,
            &NewAccount {
                code: format!("W{i}"),
                name: "wallet".into(),
                unit: Unit::Credit,
                customer_id: Some(customer),
                normal_side: Side::Credit,
                no_overdraft: true,
            },
        )
        .await
        .expect("wallet");
        wallets.push(a.id);
    }
    let issuer = store::ensure_account(
        conn,
        &NewAccount {
            code: "ISSUER".into(),
            name: "issuer".into(),
            unit: Unit::Credit,
            customer_id: Some(customer),
            normal_side: Side::Debit,
            no_overdraft: false,
        },
    )
    .await
    .expect("issuer")
    .id;
    // model: posted balance and pending per wallet (in hundredths)
    let mut posted: HashMap<AccountId, i64> = HashMap::new();
    let mut pending: HashMap<AccountId, i64> = HashMap::new();
    let mut holds = Vec::new();
    let mut txs: Vec<(grandlivre::ledger::TransactionId, Vec<(AccountId, i64)>)> = Vec::new();
    let now = Utc::now();
    for (n, op) in ops.into_iter().enumerate() {
        let key = format!("{customer}-{n}");
        let cents = |c: u32| Decimal::new(c as i64, 2);
        match op {
            Op::Grant(w, c) => {
                let tx = transfer(&key, issuer, wallets[w], cents(c));
                let p = store::post(conn, &tx).await.expect("grant");
                *posted.entry(wallets[w]).or_default() += c as i64;
                txs.push((p.id, vec![(wallets[w], c as i64)]));
            }
            Op::Move(a, b, c) => {
                if a == b {
                    continue;
                }
                let free = posted.get(&wallets[a]).copied().unwrap_or(0)
                    - pending.get(&wallets[a]).copied().unwrap_or(0);
                match store::post(conn, &transfer(&key, wallets[a], wallets[b], cents(c))).await {
                    Ok(p) => {
                        assert!(free >= c as i64, "overdraft allowed");
                        *posted.entry(wallets[a]).or_default() -= c as i64;
                        *posted.entry(wallets[b]).or_default() += c as i64;
                        txs.push((
                            p.id,
                            vec![(wallets[a], -(c as i64)), (wallets[b], c as i64)],
                        ));
                    }
                    Err(LedgerError::InsufficientFunds) => {
                        assert!(free < c as i64, "refused although covered")
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Hold(w, c) => {
                let free = posted.get(&wallets[w]).copied().unwrap_or(0)
                    - pending.get(&wallets[w]).copied().unwrap_or(0);
                let hold = NewHold::new(
                    &key,
                    wallets[w],
                    issuer,
                    credits(cents(c)),
                    now + Duration::days(1),
                )
                .expect("hold");
                match store::hold(conn, &hold, now).await {
                    Ok((h, _)) => {
                        assert!(free >= c as i64, "hold overdraws");
                        *pending.entry(wallets[w]).or_default() += c as i64;
                        holds.push((h.id, wallets[w], c as i64, true));
                    }
                    Err(LedgerError::InsufficientFunds) => assert!(free < c as i64),
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Capture(i, tenths) => {
                let Some(&(id, w, amount, open)) = holds.get(i) else {
                    continue;
                };
                let take = (amount * tenths as i64 / 10).max(1);
                let result =
                    store::capture(conn, id, Some(credits(Decimal::new(take, 2))), now).await;
                if open {
                    let (_, p) = result.expect("capture");
                    *pending.entry(w).or_default() -= amount;
                    *posted.entry(w).or_default() -= take;
                    holds[i].3 = false;
                    txs.push((p.id, vec![(w, -take)]));
                } else {
                    assert!(matches!(result, Err(LedgerError::HoldNotPending(..))));
                }
            }
            Op::Void(i) => {
                let Some(&(id, w, amount, open)) = holds.get(i) else {
                    continue;
                };
                let result = store::void(conn, id, now).await;
                if open {
                    result.expect("void");
                    *pending.entry(w).or_default() -= amount;
                    holds[i].3 = false;
                } else {
                    assert!(matches!(result, Err(LedgerError::HoldNotPending(..))));
                }
            }
            Op::Reverse(i) => {
                let Some((id, moves)) = txs.get(i).cloned() else {
                    continue;
                };
                let reversible = moves.iter().all(|(w, d)| {
                    *d <= 0
                        || posted.get(w).copied().unwrap_or(0)
                            - pending.get(w).copied().unwrap_or(0)
                            >= *d
                });
                let already = store::get_transaction(conn, id)
                    .await
                    .unwrap()
                    .unwrap()
                    .reversed_by
                    .is_some();
                match store::reverse(conn, id, None, now).await {
                    Ok(p) if p.replayed => assert!(already),
                    Ok(_) => {
                        assert!(reversible && !already);
                        for (w, d) in moves {
                            *posted.entry(w).or_default() -= d;
                        }
                    }
                    Err(LedgerError::InsufficientFunds) => assert!(!reversible),
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        for w in &wallets {
            let b = store::get_account(conn, *w).await.unwrap().unwrap().balance;
            assert_eq!(
                b.posted.0,
                Decimal::new(posted.get(w).copied().unwrap_or(0), 2),
                "posted of {w}"
            );
            assert_eq!(
                b.pending_debits.0,
                Decimal::new(pending.get(w).copied().unwrap_or(0), 2),
                "pending of {w}"
            );
            assert!(b.available.0 >= Decimal::ZERO, "invariant 3");
        }
    }
    let report = store::verify(conn).await.expect("verify");
    assert!(
        report.mismatches.is_empty(),
        "invariant 4: {:?}",
        report.mismatches
    );
    assert!(report.unbalanced_transactions.is_empty(), "invariant 1");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let db = TestDb::new().await;
            let mut conn = db.conn().await;
            run_history(&mut conn, ops).await;
        });
    }
}
