//! Contract suites for the ports: every adapter of a port must pass the same suite, so that the
//! embedded and the AWS adapters cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ryze_core::Error;
use ryze_core::domain::{
    Account, AccountId, AccountLimits, ConnectOutcome, ConnectRequest, ConnectRequestId, Connection, HostId,
    Instance, InstanceChange, InstanceId, InstanceName, InstanceState, Lease, PresenceStatus, Profile,
    Settings,
};
use ryze_core::ports::{
    BlobKey, BlobStore, Delivery, InstanceRegistry, Leases, Queue, SendOptions, TokenOwner,
};
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
    // The name, free again, finds its new holder, however lookups of the old one were remembered.
    let successor = instance(&keys, &acme.id, "a-support");
    registry.insert_instance(&successor, 10).await.unwrap();
    assert_eq!(registry.instance_by_name(&acme.id, &a.name).await.unwrap().as_deref(), Some(&successor));
    assert_eq!(registry.instance_by_name(&acme.id, &a.name).await.unwrap().as_deref(), Some(&successor));

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

/// The [`Queue`] contract for grouped messages: a group's messages come in the order sent and none
/// while an earlier one is in flight, groups are independent of each other, and a message handed
/// out again counts its receives.
pub async fn grouped_queue_contract(queue: Arc<dyn Queue<String>>) {
    let grouped = |group: &str| SendOptions { group: Some(group.to_owned()), delay: Duration::ZERO };
    for (message, group) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a")] {
        queue.send_with(&message.to_owned(), grouped(group)).await.unwrap();
    }
    // SQS may hand out the groups in separate receives, and several of a group in one.
    let mut taken = Vec::new();
    while !(taken.iter().any(|d: &Delivery<String>| d.message == "a1")
        && taken.iter().any(|d| d.message == "b1"))
    {
        let batch = receive_some(&queue).await;
        assert!(!batch.is_empty(), "both groups' first messages arrive");
        taken.extend(batch);
    }
    let of_a: Vec<_> =
        taken.iter().filter(|d| d.group.as_deref() == Some("a")).map(|d| d.message.as_str()).collect();
    assert_eq!(of_a, ["a1", "a2", "a3"][..of_a.len()], "a group's messages in the order sent");
    assert!(taken.iter().all(|d| d.receives == 1), "first receives: {taken:?}");
    assert!(
        queue.receive(10, Duration::from_millis(500)).await.unwrap().is_empty(),
        "nothing more of a group while an earlier one is in flight"
    );

    // Given back unhandled, a group's first message comes again, first, and says so.
    let (of_a, of_b): (Vec<_>, Vec<_>) = taken.into_iter().partition(|d| d.group.as_deref() == Some("a"));
    queue.ack(&of_b[0].receipt).await.unwrap();
    for delivery in &of_a {
        queue.release(&delivery.receipt).await.unwrap();
    }
    let mut handled = Vec::new();
    while handled.len() < 3 {
        let batch = receive_some(&queue).await;
        assert!(!batch.is_empty(), "the rest of the group arrives");
        if handled.is_empty() {
            assert_eq!((batch[0].message.as_str(), batch[0].receives), ("a1", 2), "{batch:?}");
        }
        for delivery in batch {
            queue.ack(&delivery.receipt).await.unwrap();
            handled.push(delivery.message);
        }
    }
    assert_eq!(handled, ["a1", "a2", "a3"]);

    // Given back for later, a group's messages come again only once that has passed, in order.
    for message in ["c1", "c2"] {
        queue.send_with(&message.to_owned(), grouped("c")).await.unwrap();
    }
    let mut taken = receive_some(&queue).await;
    taken.sort_by(|a, b| a.message.cmp(&b.message));
    assert_eq!(taken[0].message, "c1", "{taken:?}");
    for delivery in &taken {
        queue.release_after(&delivery.receipt, Duration::from_secs(4)).await.unwrap();
    }
    let early = queue.receive(10, Duration::from_millis(500)).await.unwrap();
    assert!(early.is_empty(), "not before its time: {early:?}");
    let mut handled = Vec::new();
    while handled.len() < 2 {
        let batch = receive_some(&queue).await;
        assert!(!batch.is_empty(), "the group comes again");
        for delivery in batch {
            queue.ack(&delivery.receipt).await.unwrap();
            handled.push(delivery.message);
        }
    }
    assert_eq!(handled, ["c1", "c2"]);
}

/// The [`Queue`] contract for a queue whose receives hide messages for `visibility`: a message
/// not acknowledged comes back after it, unless it was kept hidden, whose receipt then still
/// acknowledges it.
pub async fn visibility_contract(queue: Arc<dyn Queue<String>>, visibility: Duration) {
    queue.send(&"dropped".to_owned()).await.unwrap();
    let first = receive_some(&queue).await;
    assert_eq!((first[0].message.as_str(), first[0].receives), ("dropped", 1), "{first:?}");
    tokio::time::sleep(visibility).await;
    let again = receive_some(&queue).await;
    assert_eq!((again[0].message.as_str(), again[0].receives), ("dropped", 2), "back after its visibility");
    queue.ack(&again[0].receipt).await.unwrap();

    queue.send(&"kept".to_owned()).await.unwrap();
    let kept = receive_some(&queue).await;
    assert_eq!(kept[0].message, "kept");
    for _ in 0..3 {
        tokio::time::sleep(visibility / 2).await;
        queue.keep_hidden(&kept[0].receipt, visibility).await.unwrap();
    }
    let early = queue.receive(10, visibility / 2).await.unwrap();
    assert!(early.is_empty(), "kept hidden past its visibility: {early:?}");
    queue.ack(&kept[0].receipt).await.unwrap();
    let late = queue.receive(10, visibility * 2).await.unwrap();
    assert!(late.is_empty(), "acknowledged with the receipt it was kept hidden under: {late:?}");
}

async fn receive_some(queue: &Arc<dyn Queue<String>>) -> Vec<Delivery<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let batch = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        if !batch.is_empty() || tokio::time::Instant::now() > deadline {
            return batch;
        }
    }
}

/// The [`Leases`] contract: host records with growing epochs and moving beats, and instance
/// leases whose every change is conditional on the fence, with fenced instance writes.
pub async fn leases_contract(registry: Arc<dyn InstanceRegistry>, leases: Arc<dyn Leases>) {
    // Host ids are per deployment, and this store may be shared with other suites.
    let host_id = HostId::new(format!("host-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let other_id = HostId::new(format!("host-{}", uuid::Uuid::new_v4().simple())).unwrap();

    // Registering: epoch 1 for a new id, a later one on every start.
    let first = leases.register_host(&host_id, 50, "channel-1").await.unwrap();
    assert_eq!((first.epoch, first.beat, first.capacity, first.sessions), (1, 0, 50, 0));
    let other = leases.register_host(&other_id, 10, "channel-2").await.unwrap();
    let beaten = leases.beat(&first, 3, false).await.unwrap();
    assert!(beaten.beat > first.beat, "a beat moves the counter");
    assert_eq!(beaten.sessions, 3);
    let restarted = leases.register_host(&host_id, 50, "channel-3").await.unwrap();
    assert_eq!(restarted.epoch, 2);
    // The earlier start learns it was superseded at its next beat.
    assert!(matches!(leases.beat(&beaten, 3, false).await, Err(Error::HostSuperseded)));
    let hosts = leases.hosts().await.unwrap();
    let ours: Vec<_> = hosts.iter().filter(|h| h.id == host_id || h.id == other_id).collect();
    assert_eq!(ours.len(), 2, "one record per host: {hosts:?}");
    assert!(ours.iter().any(|h| h.id == host_id && h.epoch == 2 && h.channel == "channel-3"));

    // Leases: taken on the fence seen, refused on a stale one; released under the next fence.
    let keys = keys();
    let acme = account(&keys);
    registry.insert_account(&acme).await.unwrap();
    let sales = instance(&keys, &acme.id, "leased");
    registry.insert_instance(&sales, 10).await.unwrap();
    assert_eq!(leases.lease(&sales.id).await.unwrap(), Lease::NEVER_TAKEN);
    let mine = leases.take(&sales.id, &restarted.holder(), &Lease::NEVER_TAKEN).await.unwrap().unwrap();
    assert_eq!(mine.fence, 1);
    assert!(mine.is_held_by(&restarted.holder()));
    assert_eq!(leases.lease(&sales.id).await.unwrap(), mine);
    assert_eq!(
        leases.take(&sales.id, &other.holder(), &Lease::NEVER_TAKEN).await.unwrap(),
        None,
        "two hosts racing from the same view: one wins"
    );

    // Fenced writes go through while the lease is the writer's.
    let at = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let connecting = InstanceChange::Session {
        connection: Connection { state: InstanceState::Connecting, ..Connection::default() },
        profile: Profile::default(),
    };
    let written = leases.update_instance_fenced(&sales.id, connecting.clone(), at, &mine).await.unwrap();
    assert_eq!(written.connection.state, InstanceState::Connecting);

    // Another host takes over from the fence it read; the old holder's writes are refused.
    let theirs = leases.take(&sales.id, &other.holder(), &mine).await.unwrap().unwrap();
    assert_eq!(theirs.fence, 2);
    let open = InstanceChange::Session {
        connection: Connection { state: InstanceState::Connected, ..Connection::default() },
        profile: Profile::default(),
    };
    assert!(matches!(
        leases.update_instance_fenced(&sales.id, open.clone(), at, &mine).await,
        Err(Error::LeaseLost)
    ));
    assert_eq!(
        registry.instance(&sales.id).await.unwrap().unwrap().connection.state,
        InstanceState::Connecting
    );
    assert!(!leases.release(&sales.id, &mine).await.unwrap(), "a lost lease cannot be released");
    let opened = leases.update_instance_fenced(&sales.id, open, at, &theirs).await.unwrap();

    // A write from the instance as last known: applied to it while nobody else wrote, and to what
    // is stored once somebody did (nothing of theirs lost); refused to a holder no more.
    let presence = |presence_status| InstanceChange::Session {
        connection: Connection { presence_status, ..opened.connection.clone() },
        profile: Profile::default(),
    };
    let known = leases
        .update_instance_fenced_from(&opened, presence(PresenceStatus::Available), at, &theirs)
        .await
        .unwrap();
    assert_eq!(
        (known.revision, known.connection.presence_status),
        (opened.revision + 1, PresenceStatus::Available)
    );
    let settings = Settings { auto_reject_calls: true, ..Settings::default() };
    registry.update_instance(&sales.id, InstanceChange::Settings(settings.clone()), at).await.unwrap();
    let merged = leases
        .update_instance_fenced_from(&known, presence(PresenceStatus::Unavailable), at, &theirs)
        .await
        .unwrap();
    assert_eq!(merged.revision, known.revision + 2);
    assert_eq!(
        (&merged.settings, merged.connection.presence_status),
        (&settings, PresenceStatus::Unavailable)
    );
    assert_eq!(registry.instance(&sales.id).await.unwrap().as_deref(), Some(&*merged));
    assert!(matches!(
        leases.update_instance_fenced_from(&merged, presence(PresenceStatus::Available), at, &mine).await,
        Err(Error::LeaseLost)
    ));

    // Which instances a host holds (an index, so it may trail the take by a moment).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let held = leases.held_by(&other_id).await.unwrap();
        if held == [(sales.id.clone(), theirs.clone())] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "held_by never showed the take: {held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leases.release(&sales.id, &theirs).await.unwrap());
    let released = leases.lease(&sales.id).await.unwrap();
    assert_eq!(released, Lease { holder: None, fence: 3 });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !leases.held_by(&other_id).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "a released lease is held by nobody");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A takeover's many takes at once, more than one transaction's worth: each on the fence it was
    // read at. Two that another host took since are not taken, and hold none of the others back.
    let orphans: Vec<(InstanceId, Lease)> =
        (0..105).map(|_| (InstanceId::generate(), Lease::NEVER_TAKEN)).collect();
    let raced = [3, 101];
    for n in raced {
        let (instance, read) = &orphans[n];
        leases.take(instance, &other.holder(), read).await.unwrap().unwrap();
    }
    let taken = leases.take_all(&orphans, &restarted.holder()).await;
    assert_eq!(taken.len(), orphans.len());
    for (n, ((instance, _), taken)) in orphans.iter().zip(taken).enumerate() {
        let taken = taken.unwrap();
        let stored = leases.lease(instance).await.unwrap();
        if raced.contains(&n) {
            assert_eq!(taken, None, "orphan {n} was taken by another host since");
            assert!(stored.is_held_by(&other.holder()));
        } else {
            let expected = Lease { holder: Some(restarted.holder()), fence: 1 };
            assert_eq!(taken.as_ref(), Some(&expected), "orphan {n}");
            assert_eq!(stored, expected);
        }
        leases.forget(instance).await.unwrap();
    }

    // A drained host's record goes, but its epoch is kept for its next start.
    leases.remove_host(&restarted.holder()).await.unwrap();
    assert!(leases.hosts().await.unwrap().iter().all(|h| h.id != host_id));
    assert!(matches!(leases.beat(&restarted, 0, true).await, Err(Error::HostSuperseded)));
    assert_eq!(leases.register_host(&host_id, 50, "channel-4").await.unwrap().epoch, 3);
    leases.forget(&sales.id).await.unwrap();
    assert_eq!(leases.lease(&sales.id).await.unwrap(), Lease::NEVER_TAKEN);
}
