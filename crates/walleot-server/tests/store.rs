//! The SQLite store under concurrent writers: sessions sent together are committed
//! together, and one that fails does not take the others down with it.

use std::sync::Arc;
use walleot_server::domain::sessions::{SessionEvent, SessionRecord};
use walleot_server::domain::Mode;
use walleot_server::domain::Principal;
use walleot_server::testing::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_commit_together_and_fail_alone() {
    let server = TestServer::start().await;
    let store = server.services.store.clone();
    let owner = Principal {
        key_id: String::new(),
        merchant_id: server.merchant_id.clone(),
        merchant_name: String::new(),
        mode: Mode::Test,
    };
    let sessions = walleot_server::domain::sessions::Sessions::new(
        store.clone(),
        server.clock.clone(),
        Default::default(),
        server.wallets(),
    );
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
                    store.insert_session(&record, &event, None).await.is_ok(),
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
