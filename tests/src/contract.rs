//! Contract suites for the ports: every adapter of a port must pass the same suite, so that the
//! embedded and the AWS adapters cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ryze_core::Error;
use ryze_core::domain::{
    Account, AccountId, AccountLimits, ConnectOutcome, ConnectRequest, ConnectRequestId, Connection,
    Instance, InstanceChange, InstanceId, InstanceName, InstanceState, Profile, Settings,
};
use ryze_core::ports::{BlobKey, BlobStore, InstanceRegistry, Queue, TokenOwner};
use ryze_core::secrets::{Keyring, MasterKey, generate_token};

fn keys() -> Keyring {
    Keyring::new(&MasterKey::generate())
}

fn account(keys: &Keyring) -> Account {
    Account {
        id: AccountId::generate(),
        name: "contract".into(),
        token_hash: keys.hash_token(&generate_token()),
        limits: AccountLimits::default(),
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    }
}

fn instance(keys: &Keyring, account: &AccountId, name: &str) -> Instance {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    Instance::new(account.clone(), InstanceName::parse(name).unwrap(), &generate_token(), keys, at)
}

/// The [`InstanceRegistry`] contract.
pub async fn registry_contract(registry: Arc<dyn InstanceRegistry>) {
    let keys = keys();
    let acme = account(&keys);
    registry.insert_account(&acme).await.unwrap();
    assert_eq!(registry.account(&acme.id).await.unwrap().as_ref(), Some(&acme));
    assert_eq!(
        registry.token_owner(&acme.token_hash).await.unwrap(),
        Some(TokenOwner::Account { account: acme.id.clone() })
    );
    assert_eq!(registry.account(&AccountId::generate()).await.unwrap(), None);

    // Instances: stored, found by id and name, listed by name.
    let b = instance(&keys, &acme.id, "b-sales");
    let a = instance(&keys, &acme.id, "a-support");
    registry.insert_instance(&b, 10).await.unwrap();
    registry.insert_instance(&a, 10).await.unwrap();
    assert_eq!(registry.instance(&a.id).await.unwrap().as_deref(), Some(&a));
    assert_eq!(registry.instance_by_name(&acme.id, &a.name).await.unwrap().as_deref(), Some(&a));
    let names: Vec<_> =
        registry.instances(&acme.id).await.unwrap().iter().map(|i| i.name.to_string()).collect();
    assert_eq!(names, ["a-support", "b-sales"]);
    assert_eq!(
        registry.token_owner(&a.token_hash).await.unwrap(),
        Some(TokenOwner::Instance { account: acme.id.clone(), instance: a.id.clone() })
    );

    // Uniqueness, token reuse and quota, each leaving nothing behind.
    let same_name = instance(&keys, &acme.id, "a-support");
    assert!(matches!(registry.insert_instance(&same_name, 10).await, Err(Error::InstanceExists(_))));
    assert_eq!(registry.token_owner(&same_name.token_hash).await.unwrap(), None);
    let mut same_token = instance(&keys, &acme.id, "c-other");
    same_token.token_hash = a.token_hash.clone();
    assert!(matches!(registry.insert_instance(&same_token, 10).await, Err(Error::TokenInUse)));
    assert_eq!(registry.instance(&same_token.id).await.unwrap(), None);
    let over_quota = instance(&keys, &acme.id, "d-over");
    assert!(matches!(registry.insert_instance(&over_quota, 2).await, Err(Error::QuotaExceeded)));
    assert_eq!(registry.instance(&over_quota.id).await.unwrap(), None);
    assert_eq!(registry.token_owner(&over_quota.token_hash).await.unwrap(), None);

    // The same name in another account is another instance.
    let other = account(&keys);
    registry.insert_account(&other).await.unwrap();
    registry.insert_instance(&instance(&keys, &other.id, "a-support"), 10).await.unwrap();
    assert_eq!(registry.instances(&other.id).await.unwrap().len(), 1);
    assert_eq!(registry.instances(&acme.id).await.unwrap().len(), 2);

    // A create race on one name has exactly one winner.
    let racers: Vec<_> = (0..8).map(|_| instance(&keys, &acme.id, "raced")).collect();
    let results = futures::future::join_all(racers.iter().map(|r| registry.insert_instance(r, 100))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(Error::InstanceExists(_)))));

    // Updates bump the revision and stamp the time.
    let later = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let settings = Settings { keep_online_status: true, ..Settings::default() };
    let updated =
        registry.update_instance(&a.id, InstanceChange::Settings(settings.clone()), later).await.unwrap();
    assert_eq!((updated.revision, updated.updated_at, &updated.settings), (2, later, &settings));
    let connection = Connection {
        state: InstanceState::Connected,
        number_jid: Some("1@s".into()),
        ..Connection::default()
    };
    let change = InstanceChange::Session { connection: connection.clone(), profile: Profile::default() };
    let updated = registry.update_instance(&a.id, change, later).await.unwrap();
    assert_eq!((updated.revision, &updated.connection, &updated.settings), (3, &connection, &settings));
    assert_eq!(registry.instance(&a.id).await.unwrap().unwrap().revision, 3);
    let missing = registry.update_instance(&InstanceId::generate(), InstanceChange::S3(None), later).await;
    assert!(matches!(missing, Err(Error::InstanceNotFound)));

    // Delete removes the record, its name and its token, and may be repeated.
    registry.delete_instance(&a.id).await.unwrap();
    registry.delete_instance(&a.id).await.unwrap();
    assert_eq!(registry.instance(&a.id).await.unwrap(), None);
    assert_eq!(registry.instance_by_name(&acme.id, &a.name).await.unwrap(), None);
    assert_eq!(registry.token_owner(&a.token_hash).await.unwrap(), None);
    registry.insert_instance(&instance(&keys, &acme.id, "a-support"), 10).await.unwrap();

    // Account limits.
    let limits = AccountLimits { instance_quota: 7, requests_per_minute: 5, creates_per_minute: 1 };
    assert_eq!(registry.update_account_limits(&acme.id, limits).await.unwrap().limits, limits);
    assert_eq!(registry.account(&acme.id).await.unwrap().unwrap().limits, limits);
    let unknown = registry.update_account_limits(&AccountId::generate(), limits).await;
    assert!(matches!(unknown, Err(Error::AccountNotFound)));

    // Connect requests: written, answered, read back, removed; a late answer does not revive one.
    let request = ConnectRequest {
        id: ConnectRequestId::generate(),
        instance: b.id.clone(),
        created_at: later,
        outcome: None,
    };
    registry.put_connect_request(&request).await.unwrap();
    assert_eq!(registry.connect_request(&request.id).await.unwrap(), Some(request.clone()));
    let outcome = ConnectOutcome::QrCode { code: "2@abc".into() };
    registry.answer_connect_request(&request.id, outcome.clone()).await.unwrap();
    assert_eq!(registry.connect_request(&request.id).await.unwrap().unwrap().outcome, Some(outcome.clone()));
    registry.delete_connect_request(&request.id).await.unwrap();
    registry.answer_connect_request(&request.id, outcome).await.unwrap();
    assert_eq!(registry.connect_request(&request.id).await.unwrap(), None);
}

/// The [`BlobStore`] contract.
pub async fn blob_store_contract(blobs: Arc<dyn BlobStore>) {
    let key = BlobKey::session_store(&InstanceId::generate());
    assert!(!blobs.exists(&key).await.unwrap());
    assert_eq!(blobs.get(&key).await.unwrap(), None);
    blobs.put(&key, b"first".to_vec()).await.unwrap();
    blobs.put(&key, b"second".to_vec()).await.unwrap();
    assert!(blobs.exists(&key).await.unwrap());
    assert_eq!(blobs.get(&key).await.unwrap().as_deref(), Some(&b"second"[..]));
    blobs.delete(&key).await.unwrap();
    blobs.delete(&key).await.unwrap();
    assert!(!blobs.exists(&key).await.unwrap());

    // Conditional writes: only over the version read, or over nothing.
    let first = blobs.put_if(&key, b"one".to_vec(), None).await.unwrap();
    assert!(matches!(blobs.put_if(&key, b"stale".to_vec(), None).await, Err(Error::BlobConflict)));
    let read = blobs.get_versioned(&key).await.unwrap().unwrap();
    assert_eq!((read.bytes.as_slice(), &read.version), (&b"one"[..], &first));
    let second = blobs.put_if(&key, b"two".to_vec(), Some(&first)).await.unwrap();
    assert_ne!(first, second);
    assert!(matches!(blobs.put_if(&key, b"stale".to_vec(), Some(&first)).await, Err(Error::BlobConflict)));
    assert_eq!(blobs.get(&key).await.unwrap().as_deref(), Some(&b"two"[..]));
    // A writer that saw the object cannot bring it back once it is deleted.
    blobs.delete(&key).await.unwrap();
    assert!(matches!(blobs.put_if(&key, b"revived".to_vec(), Some(&second)).await, Err(Error::BlobConflict)));
    assert!(!blobs.exists(&key).await.unwrap());
    // Same bytes, written again over the version read, are still a new write.
    let again = blobs.put_if(&key, b"two".to_vec(), None).await.unwrap();
    blobs.put_if(&key, b"two".to_vec(), Some(&again)).await.unwrap();
}

/// The [`Queue`] contract, on string messages.
pub async fn queue_contract(queue: Arc<dyn Queue<String>>) {
    assert!(queue.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    for message in ["one", "two", "three"] {
        queue.send(&message.to_owned()).await.unwrap();
    }
    let mut received = Vec::new();
    while received.len() < 3 {
        let batch = queue.receive(10, Duration::from_secs(5)).await.unwrap();
        assert!(!batch.is_empty(), "messages arrive within 5 s");
        for delivery in batch {
            queue.ack(&delivery.receipt).await.unwrap();
            received.push(delivery.message);
        }
    }
    assert_eq!(received, ["one", "two", "three"]);

    // A receive given up while it waits takes nothing off the queue: the message sent meanwhile
    // is there for the next receive at once.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(300), queue.receive(10, Duration::from_secs(3)));
    assert!(abandoned.await.is_err(), "nothing to receive yet");
    queue.send(&"four".to_owned()).await.unwrap();
    let mut later = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while later.is_empty() && tokio::time::Instant::now() < deadline {
        later = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    }
    let bodies: Vec<_> = later.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(bodies, ["four"], "the message sent during an abandoned receive is delivered");
    for delivery in later {
        queue.ack(&delivery.receipt).await.unwrap();
    }
}
