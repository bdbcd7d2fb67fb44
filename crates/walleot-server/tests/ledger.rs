//! The ledger on a real SQLite file: payments, holds, vouchers and their invariants,
//! under concurrency and under random sequences of operations.

use proptest::prelude::*;
use std::sync::Arc;
use walleot_api::{Currency, SessionStatus};
use walleot_server::domain::ledger::{
    AccountKind, AccountRef, Book, LedgerError, TransferKind, TransferSpec, TransferState,
};
use walleot_server::domain::payers::ApprovalMethod;
use walleot_server::domain::payments;
use walleot_server::domain::wallets::Wallets;
use walleot_server::domain::Clock;
use walleot_server::domain::DomainError;
use walleot_server::store::{Store, StoreError};
use walleot_server::testing::TestServer;

async fn create_session(server: &TestServer, key: &str, amount: i64) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/sessions", server.base_url))
        .bearer_auth(key)
        .json(&serde_json::json!({"amount": amount, "currency": "usd"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["sessionId"].as_str().unwrap().to_string()
}

async fn wallet_available(store: &Arc<dyn Store>, payer: &str, livemode: bool) -> i64 {
    store
        .accounts_of(AccountKind::Wallet, payer)
        .await
        .unwrap()
        .iter()
        .find(|a| a.book == Book::new(Currency::USD, livemode))
        .map(|a| a.available())
        .unwrap_or(0)
}

async fn assert_consistent(wallets: &Wallets) {
    let problems = wallets.verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn the_test_helper_pays_through_the_ledger_and_the_merchant_sees_it() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let id = create_session(&server, &server.test_key, 250).await;
    let paid = http
        .post(format!(
            "{}/v1/test_helpers/sessions/{id}/pay",
            server.base_url
        ))
        .bearer_auth(&server.test_key)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let balance: serde_json::Value = http
        .get(format!("{}/v1/balance", server.base_url))
        .bearer_auth(&server.test_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        balance["available"],
        serde_json::json!([{"amount": 250, "currency": "usd"}])
    );
    assert_eq!(balance["livemode"], false);
    let live: serde_json::Value = http
        .get(format!("{}/v1/balance", server.base_url))
        .bearer_auth(&server.live_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        live["available"],
        serde_json::json!([]),
        "test money never shows in live mode"
    );
    let transfers = server.services.store.ledger_snapshot().await.unwrap().1;
    let charge = transfers
        .iter()
        .find(|t| t.session_id.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(
        (charge.amount, charge.state, charge.kind.as_str()),
        (250, TransferState::Posted, "charge")
    );
    let approval = server
        .services
        .store
        .approval_of(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approval.method, ApprovalMethod::TestHelper);
    assert_consistent(&server.wallets()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_payments_against_one_wallet_never_overdraw_it() {
    let server = TestServer::start().await;
    let wallets = server.wallets();
    let payer = wallets.register().await.unwrap();
    // 10.00 USD of sandbox credits; 30 sessions of 0.45 USD: 22 can be paid.
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(create_session(&server, &server.test_key, 45).await);
    }
    let mut sessions = Vec::new();
    for id in &ids {
        sessions.push(server.session(id).await);
    }
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| {
            let (wallets, payer) = (wallets.clone(), payer.id.clone());
            tokio::spawn(async move {
                wallets
                    .pay(&session, &payer, ApprovalMethod::Auto, None)
                    .await
            })
        })
        .collect();
    let mut paid = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(session) => {
                assert_eq!(session.status, SessionStatus::Paid);
                paid += 1;
            }
            Err(DomainError::InsufficientFunds { available }) => assert!(available < 45),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(paid, 1000 / 45);
    assert_eq!(
        wallet_available(&server.services.store, &payer.id, false).await,
        1000 - paid * 45
    );
    let merchant = wallets
        .merchant_accounts(&server.merchant_id, false)
        .await
        .unwrap();
    assert_eq!(merchant[0].balance(), paid * 45);
    assert_consistent(&wallets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_is_paid_once_when_tabs_clicks_and_the_test_helper_race() {
    let server = Arc::new(TestServer::start().await);
    let wallets = server.wallets();
    let first = wallets.register().await.unwrap();
    let second = wallets.register().await.unwrap();
    for _ in 0..5 {
        let id = create_session(&server, &server.test_key, 100).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (wallets, server, id) = (wallets.clone(), server.clone(), id.clone());
            let payer = if i % 2 == 0 {
                first.id.clone()
            } else {
                second.id.clone()
            };
            tasks.push(tokio::spawn(async move {
                let session = server.session(&id).await;
                wallets
                    .pay(&session, &payer, ApprovalMethod::Auto, None)
                    .await
                    .is_ok()
            }));
        }
        let helper = {
            let (server, id) = (server.clone(), id.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!(
                        "{}/v1/test_helpers/sessions/{id}/pay",
                        server.base_url
                    ))
                    .bearer_auth(&server.test_key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        let wins = futures::future::join_all(tasks)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        let helper_status = helper.await.unwrap();
        let helper_won = server
            .services
            .store
            .approval_of(&id)
            .await
            .unwrap()
            .unwrap()
            .method
            == ApprovalMethod::TestHelper;
        // The helper answers 200 also when the session was already paid by someone else.
        assert_eq!(helper_status, 200);
        assert_eq!(
            wins + usize::from(helper_won),
            1,
            "exactly one payment of {id}"
        );
        let charges = server.transfers_of(&id).await;
        assert_eq!(charges, 1);
    }
    assert_consistent(&wallets).await;
}

#[tokio::test]
async fn test_and_live_money_never_mix() {
    let server = TestServer::start().await;
    let wallets = server.wallets();
    let payer = wallets.register().await.unwrap();
    let live = create_session(&server, &server.live_key, 100).await;
    match wallets
        .pay(
            &server.session(&live).await,
            &payer.id,
            ApprovalMethod::Auto,
            None,
        )
        .await
    {
        Err(DomainError::InsufficientFunds { available: 0 }) => {}
        other => panic!("a live session was paid with sandbox credits: {other:?}"),
    }
    assert_eq!(
        wallet_available(&server.services.store, &payer.id, false).await,
        1000
    );
}

#[tokio::test]
async fn holds_are_posted_voided_or_lapse_exactly_once() {
    let server = TestServer::start().await;
    let wallets = server.wallets();
    let store = &server.services.store;
    let payer = wallets.register().await.unwrap();
    let hold = |amount, until| TransferSpec {
        debit: AccountRef::wallet(&payer.id, Book::test(Currency::USD)),
        credit: AccountRef::merchant(&server.merchant_id, Book::test(Currency::USD)),
        amount,
        kind: TransferKind::Charge,
        session_id: None,
        memo: None,
        hold_until: Some(until),
    };
    let now = server.clock.now_ms();
    let a = store.transfer(&hold(300, now + 10_000), now).await.unwrap();
    let b = store.transfer(&hold(200, now + 10_000), now).await.unwrap();
    let c = store.transfer(&hold(100, now + 5_000), now).await.unwrap();
    assert_eq!(wallet_available(store, &payer.id, false).await, 400);
    match store.transfer(&hold(401, now + 10_000), now).await {
        Err(StoreError::Ledger(LedgerError::InsufficientFunds {
            available: 400,
            needed: 401,
        })) => {}
        other => panic!("held funds were spent twice: {other:?}"),
    }
    store
        .resolve_transfer(&a.id, TransferState::Posted, now)
        .await
        .unwrap();
    store
        .resolve_transfer(&b.id, TransferState::Voided, now)
        .await
        .unwrap();
    for (id, to) in [
        (&a.id, TransferState::Voided),
        (&b.id, TransferState::Posted),
    ] {
        assert!(matches!(
            store.resolve_transfer(id, to, now).await,
            Err(StoreError::Ledger(LedgerError::NotPending))
        ));
    }
    assert!(matches!(
        store
            .resolve_transfer("tr_missing", TransferState::Posted, now)
            .await,
        Err(StoreError::Ledger(LedgerError::NotFound))
    ));
    assert_eq!(
        payments::lapse_due(&**store, now + 4_999, 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        payments::lapse_due(&**store, now + 5_000, 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        payments::lapse_due(&**store, now + 6_000, 10)
            .await
            .unwrap(),
        0,
        "a hold lapses once"
    );
    assert!(matches!(
        store
            .resolve_transfer(&c.id, TransferState::Posted, now)
            .await,
        Err(StoreError::Ledger(LedgerError::NotPending))
    ));
    assert_eq!(wallet_available(store, &payer.id, false).await, 700);
    let merchant = wallets
        .merchant_accounts(&server.merchant_id, false)
        .await
        .unwrap();
    assert_eq!(
        (merchant[0].balance(), merchant[0].credits_pending),
        (300, 0)
    );
    assert_consistent(&wallets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voucher_is_redeemed_once_even_by_racing_payers() {
    let server = TestServer::start().await;
    let wallets = server.wallets();
    let codes = wallets
        .create_vouchers(500, Currency::USD, true, 3)
        .await
        .unwrap();
    let (_, code) = &codes[0];
    let payers = [
        wallets.register().await.unwrap(),
        wallets.register().await.unwrap(),
    ];
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (wallets, code, payer) = (wallets.clone(), code.clone(), payers[i % 2].id.clone());
            tokio::spawn(async move { wallets.redeem(&payer, &code).await.is_ok() })
        })
        .collect();
    let wins = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(wins, 1);
    let credited: i64 = [
        wallet_available(&server.services.store, &payers[0].id, true).await,
        wallet_available(&server.services.store, &payers[1].id, true).await,
    ]
    .iter()
    .sum();
    assert_eq!(credited, 500, "live wallets got the voucher once");
    // Codes are accepted however they are typed: lower case, with or without dashes.
    let typed = codes[1].1.to_lowercase();
    let typed = format!("{}-{}", &typed[..8], &typed[8..]);
    assert_eq!(
        wallets.redeem(&payers[0].id, &typed).await.unwrap().amount,
        500
    );
    assert!(wallets
        .redeem(&payers[0].id, "NOPE-NOPE-NOPE-NOPE")
        .await
        .is_err());
    assert_consistent(&wallets).await;
}

#[tokio::test]
async fn the_database_refuses_an_overdraft_even_from_outside_the_service() {
    let server = TestServer::start().await;
    let wallets = server.wallets();
    let payer = wallets.register().await.unwrap();
    let overdraw = server
        .execute_sql(&format!(
            "UPDATE accounts SET debits_posted = credits_posted + 1 \
             WHERE kind = 'wallet' AND owner_id = '{}'",
            payer.id
        ))
        .await;
    assert!(overdraw.unwrap_err().to_lowercase().contains("check"));
    let rewrite = server
        .execute_sql("UPDATE transfers SET amount = amount + 1")
        .await;
    assert!(rewrite.unwrap_err().contains("immutable"));
    let delete = server.execute_sql("DELETE FROM transfers").await;
    assert!(delete.unwrap_err().contains("never deleted"));
}

#[derive(Debug, Clone)]
enum Op {
    Credit {
        payer: usize,
        amount: i64,
    },
    Pay {
        payer: usize,
        amount: i64,
    },
    Hold {
        payer: usize,
        amount: i64,
        lapse_in: i64,
    },
    Resolve {
        hold: usize,
        post: bool,
    },
    Lapse {
        advance: i64,
    },
    Voucher {
        payer: usize,
        amount: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..500i64).prop_map(|(payer, amount)| Op::Credit { payer, amount }),
        (0..3usize, 1..800i64).prop_map(|(payer, amount)| Op::Pay { payer, amount }),
        (0..3usize, 1..800i64, 1..100i64).prop_map(|(payer, amount, lapse_in)| Op::Hold {
            payer,
            amount,
            lapse_in
        }),
        (0..8usize, any::<bool>()).prop_map(|(hold, post)| Op::Resolve { hold, post }),
        (1..100i64).prop_map(|advance| Op::Lapse { advance }),
        (0..3usize, 1..500i64).prop_map(|(payer, amount)| Op::Voucher { payer, amount }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever happens, in any order: no wallet goes below zero, every book sums to
    /// zero, and every account's totals equal the sum of its transfers.
    #[test]
    fn the_ledger_invariants_hold_after_every_operation(ops in proptest::collection::vec(op(), 1..25)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let server = TestServer::start().await;
            let wallets = server.wallets();
            let store = server.services.store.clone();
            let mut payers = Vec::new();
            for _ in 0..3 {
                payers.push(wallets.register().await.unwrap().id);
            }
            let merchant = AccountRef::merchant(&server.merchant_id, Book::test(Currency::USD));
            let mut holds = Vec::new();
            let mut now = server.clock.now_ms();
            for op in ops {
                match op {
                    Op::Credit { payer, amount } => {
                        store.transfer(&TransferSpec {
                            debit: AccountRef::sandbox(Currency::USD),
                            credit: AccountRef::wallet(&payers[payer], Book::test(Currency::USD)),
                            amount, kind: TransferKind::SandboxCredit, session_id: None, memo: None, hold_until: None,
                        }, now).await.unwrap();
                    }
                    Op::Pay { payer, amount } => {
                        let before = wallet_available(&store, &payers[payer], false).await;
                        let id = create_session(&server, &server.test_key, amount).await;
                        let session = server.session(&id).await;
                        let paid = wallets.pay(&session, &payers[payer], ApprovalMethod::Auto, None).await;
                        assert_eq!(paid.is_ok(), before >= amount, "pay {amount} with {before}");
                    }
                    Op::Hold { payer, amount, lapse_in } => {
                        let before = wallet_available(&store, &payers[payer], false).await;
                        let held = store.transfer(&TransferSpec {
                            debit: AccountRef::wallet(&payers[payer], Book::test(Currency::USD)),
                            credit: merchant.clone(),
                            amount, kind: TransferKind::Charge, session_id: None, memo: None,
                            hold_until: Some(now + lapse_in),
                        }, now).await;
                        assert_eq!(held.is_ok(), before >= amount);
                        if let Ok(t) = held { holds.push(t.id); }
                    }
                    Op::Resolve { hold, post } => {
                        if let Some(id) = holds.get(hold) {
                            let to = if post { TransferState::Posted } else { TransferState::Voided };
                            let _ = store.resolve_transfer(id, to, now).await;
                        }
                    }
                    Op::Lapse { advance } => {
                        now += advance;
                        payments::lapse_due(&*store, now, 100).await.unwrap();
                    }
                    Op::Voucher { payer, amount } => {
                        let (_, code) = wallets.create_vouchers(amount, Currency::USD, false, 1).await.unwrap().remove(0);
                        wallets.redeem(&payers[payer], &code).await.unwrap();
                    }
                }
                assert_consistent(&wallets).await;
            }
        });
    }
}
