//! The SQLite store under concurrent writers: sessions sent together are committed
//! together, and one that fails does not take the others down with it; a plan is
//! written only while its precondition holds.

use std::sync::Arc;
use walleot_server::domain::sessions::{SessionEvent, SessionRecord, Sessions};
use walleot_server::domain::Livemode;
use walleot_server::domain::Principal;
use walleot_server::testing::TestServer;

/// The demo merchant's test mode, and the sessions service over the server's store.
fn test_sessions(server: &TestServer) -> (Principal, Sessions) {
    let owner = Principal {
        key_id: String::new(),
        merchant_id: server.merchant_id.clone(),
        merchant_name: String::new(),
        mode: Livemode::Test,
    };
    let sessions = Sessions::new(
        server.services.store.clone(),
        server.clock.clone(),
        Default::default(),
        server.wallets(),
        server.mandates(),
    );
    (owner, sessions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_commit_together_and_fail_alone() {
    let server = TestServer::start().await;
    let store = server.services.store.clone();
    let (owner, sessions) = test_sessions(&server);
    let request = || walleot_api::CreateSessionRequest {
        amount: 100,
        currency: "usd".into(),
        ..Default::default()
    };
    let duplicate: SessionRecord = sessions.prepare(&owner, request()).unwrap();
    let mut records: Vec<SessionRecord> = (0..40)
        .map(|_| sessions.prepare(&owner, request()).unwrap())
        .collect();
    records.insert(10, duplicate.clone());
    records.insert(30, duplicate.clone());
    let tasks: Vec<_> = records
        .into_iter()
        .map(|record| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let event = SessionEvent::new(&record.id, None, record.status, record.created_at);
                (
                    record.id.clone(),
                    store
                        .insert_session(&record, &event, None, None)
                        .await
                        .is_ok(),
                )
            })
        })
        .collect();
    let mut ok = 0;
    let mut duplicate_ok = 0;
    for task in tasks {
        let (id, inserted) = task.await.unwrap();
        if id == duplicate.id {
            duplicate_ok += usize::from(inserted);
        } else {
            assert!(inserted, "{id} was lost");
            ok += 1;
        }
    }
    assert_eq!((ok, duplicate_ok), (40, 1), "the duplicate fails alone");
    let page = store
        .list_sessions(&server.merchant_id, false, None, None, 0, 100)
        .await
        .unwrap();
    assert_eq!(page.sessions.len(), 41);
    let events = store.session_events(&duplicate.id).await.unwrap();
    assert_eq!(events.len(), 1, "the failed insert left no event behind");
}

/// A plan is written only while what it was made from still holds: a payment planned
/// before the session was cancelled, or beyond the payer's hourly cap, moves nothing.
#[tokio::test]
async fn a_plan_whose_precondition_no_longer_holds_writes_nothing() {
    use walleot_api::SessionStatus;
    use walleot_server::domain::payers::ApprovalMethod;
    use walleot_server::domain::payments::{self, Closing, PaymentTerms};
    use walleot_server::domain::Clock;
    use walleot_server::store::PlanOutcome;

    let server = TestServer::start().await;
    let store = server.services.store.clone();
    let payer = server.wallets().register().await.unwrap();
    let (owner, sessions) = test_sessions(&server);
    let request = || walleot_api::CreateSessionRequest {
        amount: 100,
        currency: "usd".into(),
        ..Default::default()
    };
    let terms = |cap| PaymentTerms {
        payer_id: payer.id.clone(),
        method: ApprovalMethod::Auto,
        evidence: None,
        hold_ms: 60_000,
        cover_from_sandbox: false,
        auto_approvals_per_hour: cap,
    };
    let now = server.clock.now_ms();

    // Planned while pending, cancelled before it is written.
    let session = sessions.prepare(&owner, request()).unwrap();
    sessions.insert(&session, None, None).await.unwrap();
    let payment = payments::plan_payment(&session, &terms(None), now).unwrap();
    let cancel = payments::plan_closing(&session, Closing::Cancel, now).unwrap();
    assert!(matches!(
        store.apply_plan(&cancel).await.unwrap(),
        PlanOutcome::Applied(_)
    ));
    match store.apply_plan(&payment).await.unwrap() {
        PlanOutcome::Stale(current) => assert_eq!(current.status, SessionStatus::Cancelled),
        other => panic!("a cancelled session was paid: {other:?}"),
    }
    assert_eq!(server.transfers_of(&session.id).await, 0);
    assert_eq!(store.approval_of(&session.id).await.unwrap(), None);

    // A cap of one payment without a second factor: the second plan is refused by it.
    let first = sessions.prepare(&owner, request()).unwrap();
    let second = sessions.prepare(&owner, request()).unwrap();
    for s in [&first, &second] {
        sessions.insert(s, None, None).await.unwrap();
    }
    let plan = |s| payments::plan_payment(s, &terms(Some(1)), now).unwrap();
    assert!(matches!(
        store.apply_plan(&plan(&first)).await.unwrap(),
        PlanOutcome::Applied(_)
    ));
    match store.apply_plan(&plan(&second)).await.unwrap() {
        PlanOutcome::Stale(current) => assert_eq!(
            payments::payment_refusal(&current, now),
            payments::PaymentRefusal::AutoLimitReached
        ),
        other => panic!("the cap was passed: {other:?}"),
    }
    assert_eq!(server.transfers_of(&second.id).await, 0);
    assert_eq!(
        store
            .auto_approvals_since(&payer.id, &server.merchant_id, false, now - 1)
            .await
            .unwrap(),
        1
    );
    let events = store.session_events(&second.id).await.unwrap();
    assert_eq!(events.len(), 1, "only its creation is recorded");
    assert!(server.wallets().verify_ledger().await.unwrap().is_empty());
}

/// A stored transfer kind the code does not know is reported as corrupt data, never
/// passed along as text.
#[tokio::test]
async fn an_unknown_stored_transfer_kind_is_corrupt_data() {
    use walleot_server::store::StoreError;
    let server = TestServer::start().await;
    let store = server.services.store.clone();
    let (owner, sessions) = test_sessions(&server);
    let request = walleot_api::CreateSessionRequest {
        amount: 100,
        currency: "usd".into(),
        ..Default::default()
    };
    let session = sessions.prepare(&owner, request).unwrap();
    sessions.insert(&session, None, None).await.unwrap();
    server
        .wallets()
        .pay_as_sandbox_payer(&session)
        .await
        .unwrap();
    let id = session.id;
    assert!(store.ledger_snapshot().await.is_ok());

    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.database_path.display()))
        .await
        .unwrap();
    // Corruption from outside the service: the ledger's own guard is taken away first.
    sqlx::query("DROP TRIGGER transfers_immutable")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE transfers SET kind = 'chargeback' WHERE session_id = ?")
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();
    match store.ledger_snapshot().await {
        Err(StoreError::Corrupt(what)) => assert!(what.contains("transfer kind"), "{what}"),
        other => panic!("an unknown transfer kind was read: {:?}", other.map(|_| ())),
    }
}

/// The status check's one read (key and session together, on the calling thread)
/// answers as the two reads through the pool do: the key's own session, nothing of
/// another mode or merchant, an unknown key refused, a revocation seen at once.
#[tokio::test]
async fn the_status_checks_one_read_agrees_with_the_two_reads_it_replaces() {
    let server = TestServer::start().await;
    let keys = &server.services.keys;
    let (owner, sessions) = test_sessions(&server);
    let request = walleot_api::CreateSessionRequest {
        amount: 120,
        currency: "usd".into(),
        ..Default::default()
    };
    let record = sessions.prepare(&owner, request).unwrap();
    let id = &sessions.insert(&record, None, None).await.unwrap().id;
    let (owner, session) = read(&server, id, &server.test_key).await.unwrap();
    assert_eq!(owner.merchant_id, server.merchant_id);
    assert_eq!(session.unwrap().amount, 120);
    let (_, other_mode) = read(&server, id, &server.live_key).await.unwrap();
    assert!(other_mode.is_none());
    let stranger = server.other_merchant_key("Other", Livemode::Test).await;
    let (_, other_merchant) = read(&server, id, &stranger).await.unwrap();
    assert!(other_merchant.is_none());
    let unknown = format!("sk_test_{}", "x".repeat(40));
    assert!(read(&server, id, &unknown).await.is_err());

    let key_id = owner.key_id.clone();
    keys.revoke(&key_id, 1).await.unwrap();
    let refused = read(&server, id, &server.test_key).await.unwrap_err();
    assert!(refused.to_string().contains("revoked"), "{refused}");
}

/// Both ways of a status check's reads, which must agree; the one read's answer.
async fn read(
    server: &TestServer,
    id: &str,
    key: &str,
) -> Result<(Principal, Option<SessionRecord>), walleot_server::domain::keys::AuthenticateError> {
    let keys = &server.services.keys;
    let header = format!("Bearer {key}");
    let one = keys
        .authenticate_reading(Some(&header), id)
        .await
        .expect("the store answers in one read");
    let two = match keys.authenticate(Some(&header)).await {
        Ok(p) => {
            let session = server
                .services
                .store
                .get_session(&p.merchant_id, p.mode.is_live(), id)
                .await
                .unwrap();
            Ok((p, session))
        }
        Err(e) => Err(e),
    };
    assert_eq!(format!("{one:?}"), format!("{two:?}"));
    one
}

/// An answer kept for an idempotency key stands until it is forgotten: a second
/// answer for the key is refused, and a session created with it is not written, so
/// that two processes racing on one key create one session.
#[tokio::test]
async fn a_key_answered_meanwhile_refuses_the_second_answer_and_its_session() {
    use walleot_server::domain::ports::{IdempotencyClaim, IdempotencyCompletion};
    use walleot_server::store::StoreError;
    let server = TestServer::start().await;
    let store = server.services.store.clone();
    let answer = |body: &str, created_at: i64, forget_before: i64| IdempotencyCompletion {
        scope: "m:test".into(),
        key: "k1".into(),
        fingerprint: "f".into(),
        created_at,
        forget_before,
        status: 200,
        body: body.as_bytes().to_vec(),
    };
    let look_up = |now| {
        let store = store.clone();
        async move {
            store
                .look_up_idempotency_key("m:test", "k1", "f", now, 60_000, 86_400_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(look_up(1_000).await, IdempotencyClaim::Acquired);
    store
        .complete_idempotency_key(&answer("first", 1_000, 0))
        .await
        .unwrap();
    let second = store
        .complete_idempotency_key(&answer("second", 2_000, 0))
        .await;
    assert!(
        matches!(second, Err(StoreError::AnsweredMeanwhile)),
        "{second:?}"
    );
    let kept = IdempotencyClaim::Replay {
        status: 200,
        body: b"first".to_vec(),
    };
    assert_eq!(look_up(2_000).await, kept);

    // A session whose answer cannot be kept is not created.
    let (owner, sessions) = test_sessions(&server);
    let record = sessions
        .prepare(
            &owner,
            walleot_api::CreateSessionRequest {
                amount: 100,
                currency: "usd".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let event = SessionEvent::new(&record.id, None, record.status, record.created_at);
    let refused = store
        .insert_session(&record, &event, Some(&answer("third", 3_000, 0)), None)
        .await;
    assert!(
        matches!(refused, Err(StoreError::AnsweredMeanwhile)),
        "{refused:?}"
    );
    assert!(store
        .get_session(&server.merchant_id, false, &record.id)
        .await
        .unwrap()
        .is_none());

    // Once past its retention (from the very millisecond the look-up forgets it), the
    // old answer gives way.
    assert_eq!(look_up(86_401_000).await, IdempotencyClaim::Acquired);
    store
        .complete_idempotency_key(&answer("edge", 86_401_000, 1_000))
        .await
        .unwrap();
    let edge = IdempotencyClaim::Replay {
        status: 200,
        body: b"edge".to_vec(),
    };
    assert_eq!(look_up(86_401_000).await, edge);
    store
        .complete_idempotency_key(&answer("later", 200_000_000, 113_600_000))
        .await
        .unwrap();
    let later = IdempotencyClaim::Replay {
        status: 200,
        body: b"later".to_vec(),
    };
    assert_eq!(look_up(200_000_000).await, later);
}

/// A database in memory has no file for the status check's own connections: it opens,
/// and its status checks read through the pool.
#[tokio::test]
async fn a_database_in_memory_opens_and_answers_status_checks_through_the_pool() {
    let store = walleot_server::store::open("sqlite::memory:")
        .await
        .unwrap();
    assert!(store.key_and_session("hash", "sess_x").await.is_none());
    store.ping().await.unwrap();
}
