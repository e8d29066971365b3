//! The ledger's Rust API and the invariants PostgreSQL enforces on its own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use uuid::Uuid;

use grandlivre::ledger::store::{self, NewAccount, Settlement};
use grandlivre::ledger::{
    AccountId, HoldId, HoldStatus, LedgerError, NewHold, NewTransaction, Posting, Side,
    TransactionId,
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

/// What the service could ask of `ledger_settle` directly, though no caller of the Rust
/// API does: the same hold twice in one call, a capture with more decimals than its unit.
/// Both refused, nothing moved.
#[tokio::test]
async fn settle_takes_each_hold_once_and_captures_within_the_unit_scale() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let (wallet, issuer) = wallet_and_issuer(&mut conn).await;
    store::post(&mut conn, &transfer("grant", issuer, wallet, dec!(10)))
        .await
        .expect("grant");
    let now = Utc::now();
    let mut held = Vec::new();
    for key in ["a", "b"] {
        let hold = NewHold::new(
            key,
            wallet,
            issuer,
            credits(dec!(5)),
            now + Duration::days(1),
        )
        .expect("hold");
        held.push(store::hold(&mut conn, &hold, now).await.expect("hold").0.id);
    }
    let twice = [(held[0], Settlement::Void), (held[0], Settlement::Void)];
    assert!(
        store::settle_in_tx(&conn, &twice, now, false)
            .await
            .is_err(),
        "a hold released twice"
    );
    let err = refused(
        &mut conn,
        &format!(
            "SELECT * FROM ledger_settle(ARRAY['{}']::uuid[], ARRAY['captured'], ARRAY[1.005]::numeric[], \
             ARRAY['CREDIT'], ARRAY['{}']::uuid[], now(), false)",
            held[0],
            Uuid::now_v7()
        ),
    )
    .await;
    assert!(err.contains("fewer decimals"), "{err}");
    for id in &held {
        let hold = store::get_hold(&mut conn, *id).await.unwrap().unwrap();
        assert_eq!(hold.status, HoldStatus::Pending);
    }
    assert_eq!(available(&mut conn, wallet).await, dec!(0));
    let report = store::verify(&mut conn).await.expect("verify");
    assert!(
        report.mismatches.is_empty() && report.unbalanced_transactions.is_empty(),
        "{report:?}"
    );
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

/// One step of a concurrent history. Hold and transaction indices wrap around the holds
/// placed and transactions posted so far, by any task.
#[derive(Debug, Clone)]
enum SharedOp {
    /// Grant hundredths of credits from the issuer to wallet `w`.
    Grant(usize, u32),
    /// Move hundredths of credits from wallet `from` to wallet `to` (the next one if equal).
    Move(usize, usize, u32),
    /// Hold hundredths of credits of wallet `from` for wallet `to` (the issuer if equal),
    /// expiring an hour after the histories' `now` (`soon`) or a week after.
    Hold {
        from: usize,
        to: usize,
        cents: u32,
        soon: bool,
    },
    /// Capture the n-th hold for tenths of it, less than held (10: the whole hold).
    Capture(usize, u32),
    Void(usize),
    /// Expire the holds due two hours after `now` (`false`: those placed `soon`) or eight
    /// days after (`true`: all).
    Expire(bool),
    /// Reverse the n-th transaction (grant, move, capture or reversal).
    Reverse(usize),
}

const SHARED_WALLETS: usize = 4;

fn shared_op() -> impl Strategy<Value = SharedOp> {
    prop_oneof![
        2 => (0..SHARED_WALLETS, 1..400u32).prop_map(|(w, c)| SharedOp::Grant(w, c)),
        3 => (0..SHARED_WALLETS, 0..SHARED_WALLETS, 1..400u32)
            .prop_map(|(a, b, c)| SharedOp::Move(a, b, c)),
        3 => (0..SHARED_WALLETS, 0..SHARED_WALLETS, 1..300u32, any::<bool>()).prop_map(
            |(from, to, cents, soon)| SharedOp::Hold { from, to, cents, soon }
        ),
        2 => (0..16usize, 1..=10u32).prop_map(|(h, t)| SharedOp::Capture(h, t)),
        1 => (0..16usize).prop_map(SharedOp::Void),
        1 => any::<bool>().prop_map(SharedOp::Expire),
        2 => (0..16usize).prop_map(SharedOp::Reverse),
    ]
}

/// A movement of a posted balance.
type Effect = (AccountId, Side, Decimal);

/// What the tasks did, as the API reported it.
#[derive(Default)]
struct SharedLog {
    /// Holds placed: id, debit and credit accounts, amount.
    holds: Vec<(HoldId, AccountId, AccountId, Decimal)>,
    /// Transactions posted by this test, each with what it moved.
    txs: Vec<(TransactionId, Vec<Effect>)>,
    /// Every movement of a posted balance that the API reported as done.
    posted: Vec<Effect>,
    captured: HashMap<HoldId, Decimal>,
    voided: HashSet<HoldId>,
    expired: usize,
}

/// Runs one task's operations over the shared accounts, recording what succeeded in `log`;
/// panics on an error that concurrency does not explain.
async fn run_shared_task(
    conn: &mut AsyncPgConnection,
    task: usize,
    ops: Vec<SharedOp>,
    wallets: &[AccountId],
    issuer: AccountId,
    log: &Mutex<SharedLog>,
    now: DateTime<Utc>,
) {
    let cents = |c: u32| Decimal::new(c as i64, 2);
    let moved = |from: AccountId, to: AccountId, amount: Decimal| {
        vec![(from, Side::Debit, amount), (to, Side::Credit, amount)]
    };
    for (n, op) in ops.into_iter().enumerate() {
        let key = format!("task{task}-{n}");
        match op {
            SharedOp::Grant(w, c) => {
                let p = store::post(conn, &transfer(&key, issuer, wallets[w], cents(c)))
                    .await
                    .unwrap_or_else(|e| panic!("grant: {e:?}"));
                let effects = moved(issuer, wallets[w], cents(c));
                let mut log = log.lock().unwrap();
                log.posted.extend(effects.iter().copied());
                log.txs.push((p.id, effects));
            }
            SharedOp::Move(a, b, c) => {
                let b = if a == b { (b + 1) % wallets.len() } else { b };
                match store::post(conn, &transfer(&key, wallets[a], wallets[b], cents(c))).await {
                    Ok(p) => {
                        let effects = moved(wallets[a], wallets[b], cents(c));
                        let mut log = log.lock().unwrap();
                        log.posted.extend(effects.iter().copied());
                        log.txs.push((p.id, effects));
                    }
                    Err(LedgerError::InsufficientFunds) => {}
                    Err(e) => panic!("move: {e:?}"),
                }
            }
            SharedOp::Hold {
                from,
                to,
                cents: c,
                soon,
            } => {
                let credit = if from == to { issuer } else { wallets[to] };
                let expires = now
                    + if soon {
                        Duration::hours(1)
                    } else {
                        Duration::days(7)
                    };
                let hold = NewHold::new(&key, wallets[from], credit, credits(cents(c)), expires)
                    .expect("hold");
                match store::hold(conn, &hold, now).await {
                    Ok((h, replayed)) => {
                        // (already resolved, maybe, by another task: the view is read after)
                        assert!(!replayed, "a new key replayed");
                        log.lock()
                            .unwrap()
                            .holds
                            .push((h.id, wallets[from], credit, cents(c)));
                    }
                    Err(LedgerError::InsufficientFunds) => {}
                    Err(e) => panic!("hold: {e:?}"),
                }
            }
            SharedOp::Capture(i, tenths) => {
                let Some((id, debit, credit, amount)) = ({
                    let log = log.lock().unwrap();
                    (!log.holds.is_empty()).then(|| log.holds[i % log.holds.len()])
                }) else {
                    continue;
                };
                let take = if tenths == 10 {
                    amount
                } else {
                    (amount * Decimal::from(tenths) / dec!(10))
                        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero)
                        .max(dec!(0.01))
                };
                let asked = (tenths < 10).then(|| credits(take));
                match store::capture(conn, id, asked, now).await {
                    Ok((h, p)) => {
                        assert_eq!(h.status, HoldStatus::Captured);
                        assert_eq!(h.captured_amount.map(|a| a.0), Some(take));
                        let effects = moved(debit, credit, take);
                        let mut log = log.lock().unwrap();
                        assert!(log.captured.insert(id, take).is_none(), "captured twice");
                        log.posted.extend(effects.iter().copied());
                        log.txs.push((p.id, effects));
                    }
                    Err(LedgerError::HoldNotPending(h, status))
                        if h == id && status != HoldStatus::Pending => {}
                    Err(e) => panic!("capture: {e:?}"),
                }
            }
            SharedOp::Void(i) => {
                let Some((id, ..)) = ({
                    let log = log.lock().unwrap();
                    (!log.holds.is_empty()).then(|| log.holds[i % log.holds.len()])
                }) else {
                    continue;
                };
                match store::void(conn, id, now).await {
                    Ok(h) => {
                        assert_eq!(h.status, HoldStatus::Voided);
                        assert!(log.lock().unwrap().voided.insert(id), "voided twice");
                    }
                    Err(LedgerError::HoldNotPending(h, status))
                        if h == id && status != HoldStatus::Pending => {}
                    Err(e) => panic!("void: {e:?}"),
                }
            }
            SharedOp::Expire(late) => {
                let at = now
                    + if late {
                        Duration::days(8)
                    } else {
                        Duration::hours(2)
                    };
                let n = store::expire_holds(conn, at)
                    .await
                    .unwrap_or_else(|e| panic!("expire: {e:?}"));
                log.lock().unwrap().expired += n;
            }
            SharedOp::Reverse(i) => {
                let Some((id, effects)) = ({
                    let log = log.lock().unwrap();
                    (!log.txs.is_empty()).then(|| log.txs[i % log.txs.len()].clone())
                }) else {
                    continue;
                };
                match store::reverse(conn, id, None, now).await {
                    Ok(p) if p.replayed => {}
                    Ok(p) => {
                        let undone: Vec<Effect> = effects
                            .iter()
                            .map(|&(a, side, m)| (a, side.opposite(), m))
                            .collect();
                        let mut log = log.lock().unwrap();
                        log.posted.extend(undone.iter().copied());
                        log.txs.push((p.id, undone));
                    }
                    Err(LedgerError::InsufficientFunds) | Err(LedgerError::AlreadyReversed(_)) => {}
                    Err(e) => panic!("reverse: {e:?}"),
                }
            }
        }
    }
}

/// Runs one history per task, concurrently, over 4 no-overdraft wallets and the issuer of
/// one customer; then checks the ledger against itself (verify), against the overdraft
/// rule, against conservation, and against what the API reported.
async fn run_shared_histories(histories: Vec<Vec<SharedOp>>) {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let customer = Uuid::now_v7();
    let open = |code: String, side: Side, no_overdraft: bool| NewAccount {
        code,
        name: "account".into(),
        unit: Unit::Credit,
        customer_id: Some(customer),
        normal_side: side,
        no_overdraft,
    };
    let mut wallets = Vec::new();
    for i in 0..SHARED_WALLETS {
        let a = store::ensure_account(&conn, &open(format!("W{i}"), Side::Credit, true))
            .await
            .expect("wallet");
        wallets.push(a.id);
    }
    let issuer = store::ensure_account(&conn, &open("ISSUER".into(), Side::Debit, false))
        .await
        .expect("issuer")
        .id;
    // each wallet starts with a little, so that holds and moves race for it from the start
    let log = Arc::new(Mutex::new(SharedLog::default()));
    run_shared_task(
        &mut conn,
        histories.len(),
        (0..SHARED_WALLETS)
            .map(|w| SharedOp::Grant(w, 300))
            .collect(),
        &wallets,
        issuer,
        &log,
        Utc::now(),
    )
    .await;
    let pool = db.pool(histories.len());
    let start = Arc::new(tokio::sync::Barrier::new(histories.len()));
    let now = Utc::now();
    let tasks: Vec<_> = histories
        .into_iter()
        .enumerate()
        .map(|(task, ops)| {
            let (pool, log, start, wallets) =
                (pool.clone(), log.clone(), start.clone(), wallets.clone());
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("connection");
                start.wait().await;
                run_shared_task(&mut conn, task, ops, &wallets, issuer, &log, now).await
            })
        })
        .collect();
    // all of them, before the database goes: a failure is reported alone
    let results = futures_util::future::join_all(tasks).await;
    for r in results {
        r.expect("a task failed");
    }
    let log = std::mem::take(&mut *log.lock().unwrap());

    let report = store::verify(&mut conn).await.expect("verify");
    assert!(
        report.mismatches.is_empty(),
        "stored balances differ from postings and holds: {:?}",
        report.mismatches
    );
    assert!(
        report.unbalanced_transactions.is_empty(),
        "unbalanced: {:?}",
        report.unbalanced_transactions
    );
    let all = store::list_accounts(&mut conn, None, None, 10_000)
        .await
        .expect("accounts");
    for a in all.iter().filter(|a| a.no_overdraft) {
        assert!(
            a.balance.available.0 >= Decimal::ZERO,
            "{} ({}) overdrawn: {:?}",
            a.code,
            a.id,
            a.balance
        );
    }
    // conservation: value only moves between the customer's accounts
    let total = |f: fn(&grandlivre::ledger::BalanceView) -> Decimal| -> Decimal {
        all.iter().map(|a| f(&a.balance)).sum()
    };
    assert_eq!(total(|b| b.posted_debits.0), total(|b| b.posted_credits.0));
    assert_eq!(
        total(|b| b.pending_debits.0),
        total(|b| b.pending_credits.0)
    );
    let account = |id: AccountId| all.iter().find(|a| a.id == id).expect("listed");
    let in_wallets: Decimal = wallets.iter().map(|w| account(*w).balance.posted.0).sum();
    assert_eq!(
        in_wallets,
        account(issuer).balance.posted.0,
        "the wallets hold what the issuer issued"
    );

    // the holds ended as the API said: each resolved at most once, by the call that
    // reported it
    let ids: Vec<Uuid> = log.holds.iter().map(|h| h.0 .0).collect();
    let holds = store::get_holds(&conn, &ids).await.expect("holds");
    assert_eq!(holds.len(), ids.len());
    let mut expired = 0;
    let mut pending: HashMap<(AccountId, Side), Decimal> = HashMap::new();
    for h in &holds {
        match h.status {
            HoldStatus::Captured => assert_eq!(
                log.captured.get(&h.id).copied(),
                h.captured_amount.map(|a| a.0),
                "hold {} captured without a capture reported",
                h.id
            ),
            HoldStatus::Voided => assert!(log.voided.contains(&h.id), "{} voided", h.id),
            HoldStatus::Expired => expired += 1,
            HoldStatus::Pending => {
                *pending
                    .entry((h.debit_account_id, Side::Debit))
                    .or_default() += h.amount.0;
                *pending
                    .entry((h.credit_account_id, Side::Credit))
                    .or_default() += h.amount.0;
            }
        }
    }
    let count = |s: HoldStatus| holds.iter().filter(|h| h.status == s).count();
    assert_eq!(count(HoldStatus::Captured), log.captured.len());
    assert_eq!(count(HoldStatus::Voided), log.voided.len());
    assert_eq!(expired, log.expired, "holds expired as reported");

    // each account moved by exactly what the API reported as done
    for id in wallets.iter().copied().chain([issuer]) {
        let moved = |side: Side| -> Decimal {
            log.posted
                .iter()
                .filter(|(a, s, _)| *a == id && *s == side)
                .map(|e| e.2)
                .sum()
        };
        let b = &account(id).balance;
        let held = |side| pending.get(&(id, side)).copied().unwrap_or_default();
        assert_eq!(
            b.posted_debits.0,
            moved(Side::Debit),
            "posted debits of {id}"
        );
        assert_eq!(
            b.posted_credits.0,
            moved(Side::Credit),
            "posted credits of {id}"
        );
        assert_eq!(
            b.pending_debits.0,
            held(Side::Debit),
            "pending debits of {id}"
        );
        assert_eq!(
            b.pending_credits.0,
            held(Side::Credit),
            "pending credits of {id}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10,
        // concurrent runs do not replay: no regression file, a short shrink
        failure_persistence: None,
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn concurrent_histories_keep_the_invariants(
        histories in proptest::collection::vec(proptest::collection::vec(shared_op(), 6..24), 4)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_shared_histories(histories));
    }
}

/// Takes one unit at a time from `wallet` into `sink` until refused (or past `units`, all
/// there were), by a 1-unit post (`by_hold`: false) or a hold captured whole; returns how
/// many it took.
async fn drain_one_by_one(
    conn: &mut AsyncPgConnection,
    task: usize,
    by_hold: bool,
    wallet: AccountId,
    sink: AccountId,
    units: u32,
) -> u32 {
    let one = Amount::new(dec!(1), Unit::Ticket).expect("amount");
    let now = Utc::now();
    let mut taken = 0;
    while taken <= units {
        let key = format!("drain-{task}-{taken}");
        let result = if by_hold {
            let hold =
                NewHold::new(&key, wallet, sink, one, now + Duration::hours(1)).expect("hold");
            match store::hold(conn, &hold, now).await {
                Ok((h, _)) => {
                    let (h, _) = store::capture(conn, h.id, None, now)
                        .await
                        .unwrap_or_else(|e| panic!("capturing its own hold: {e:?}"));
                    assert_eq!(h.status, HoldStatus::Captured);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            let tx = NewTransaction::new(
                &key,
                "test.consume",
                vec![Posting::debit(wallet, one), Posting::credit(sink, one)],
            )
            .expect("balanced");
            store::post(conn, &tx).await.map(|_| ())
        };
        match result {
            Ok(()) => taken += 1,
            Err(LedgerError::InsufficientFunds) => return taken,
            Err(e) => panic!("task {task}: {e:?}"),
        }
    }
    taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tasks_drain_the_last_units_exactly() {
    const UNITS: u32 = 20;
    const TASKS: usize = 32;
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let customer = Uuid::now_v7();
    let open = |code: &str, side: Side, no_overdraft: bool| NewAccount {
        code: code.into(),
        name: "tickets".into(),
        unit: Unit::Ticket,
        customer_id: Some(customer),
        normal_side: side,
        no_overdraft,
    };
    let wallet = store::ensure_account(&conn, &open("TICKET-WALLET", Side::Credit, true))
        .await
        .expect("wallet")
        .id;
    let sold = store::ensure_account(&conn, &open("TICKET-SOLD", Side::Debit, false))
        .await
        .expect("issuer")
        .id;
    let used = store::ensure_account(&conn, &open("TICKET-USED", Side::Credit, false))
        .await
        .expect("sink")
        .id;
    let tickets = Amount::new(Decimal::from(UNITS), Unit::Ticket).expect("amount");
    store::post(
        &mut conn,
        &NewTransaction::new(
            "buy",
            "test.buy",
            vec![
                Posting::debit(sold, tickets),
                Posting::credit(wallet, tickets),
            ],
        )
        .expect("balanced"),
    )
    .await
    .expect("buy");

    let pool = db.pool(TASKS + 1);
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // a watcher reads the wallet while the tasks drain it: never below zero
    let watcher = {
        let (pool, done) = (pool.clone(), done.clone());
        tokio::spawn(async move {
            let mut conn = pool.get().await.expect("connection");
            let mut reads = 0;
            while !std::sync::atomic::AtomicBool::load(&done, std::sync::atomic::Ordering::Relaxed)
                || reads == 0
            {
                let b = store::get_account(&mut conn, wallet)
                    .await
                    .expect("read")
                    .expect("exists")
                    .balance;
                assert!(
                    b.available.0 >= Decimal::ZERO && b.posted.0 >= Decimal::ZERO,
                    "{b:?}"
                );
                reads += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            reads
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (pool, start) = (pool.clone(), start.clone());
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("connection");
                start.wait().await;
                drain_one_by_one(&mut conn, task, task % 2 == 1, wallet, used, UNITS).await
            })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        taken += t.await.expect("a task failed");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.await.expect("the watcher failed") > 0);

    assert_eq!(taken, UNITS, "exactly the units there were are taken");
    let w = store::get_account(&mut conn, wallet)
        .await
        .expect("read")
        .expect("exists")
        .balance;
    assert_eq!(
        (w.posted.0, w.pending_debits.0, w.available.0),
        (dec!(0), dec!(0), dec!(0))
    );
    assert_eq!(
        available(&mut conn, used).await,
        Decimal::from(UNITS),
        "every unit taken arrived"
    );
    let report = store::verify(&mut conn).await.expect("verify");
    assert!(
        report.mismatches.is_empty() && report.unbalanced_transactions.is_empty(),
        "{report:?}"
    );
}
