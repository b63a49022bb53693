//! Replaced streams, overlapping logins of one device, dropped sockets and frozen connections.

use super::*;

#[tokio::test]
async fn a_replaced_stream_is_reported() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    server.replace(PHONE).await.expect("replace");

    client.expect("StreamReplaced", DEADLINE, |e| matches!(e, Event::StreamReplaced(_)).then_some(())).await;
    // Asked for by the test, not caused by a second login: the fleet's counters stay at 0.
    assert_eq!((server.overlapping_logins(PHONE), server.replaced_conflicts(PHONE)), (0, 0));
    client.stop().await;
}

#[tokio::test]
async fn a_second_login_of_the_same_device_overlaps_and_replaces_the_first() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (first_store, second_store) = (store_in(&dir), dir.path().join("copy.db"));
    paired_client(&server, &first_store, PHONE).await.stop().await;
    copy_store(&first_store, &second_store);
    let mut first = Client::start(&server, &first_store).await;
    first.connected().await;
    server.wait_logged_in(PHONE, DEADLINE).await.expect("the first client logged in");
    assert_eq!(server.overlapping_logins(PHONE), 0, "the first client logged in after the pairing ended");

    let mut second = Client::start(&server, &second_store).await;

    second.connected().await;
    first.expect("StreamReplaced", DEADLINE, |e| matches!(e, Event::StreamReplaced(_)).then_some(())).await;
    assert_eq!(server.logins(PHONE), 3);
    assert_eq!((server.overlapping_logins(PHONE), server.replaced_conflicts(PHONE)), (1, 1));
    assert_eq!((server.total_overlapping_logins(), server.total_replaced_conflicts()), (1, 1));
    assert_eq!(server.overlapping_logins("5511777777777"), 0);
    // A replaced client does not reconnect (it would evict the other in turn), so nothing more.
    server.wait_for("one open connection", DEADLINE, || server.open_connections() == 1).await.expect("one");
    assert!(server.logged_in(PHONE));
    first.stop().await;
    second.stop().await;
    assert_eq!(server.total_overlapping_logins(), 1);
}

#[tokio::test]
async fn a_dropped_socket_is_reconnected_by_the_client() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    server.drop_socket(PHONE).await.expect("drop socket");

    client.expect("Disconnected", DEADLINE, |e| matches!(e, Event::Disconnected(_)).then_some(())).await;
    client.connected().await;
    server.wait_logged_in(PHONE, DEADLINE).await.expect("logged in again");
    assert_eq!(server.logins(PHONE), 2);
    // The old connection had ended before the new login: no overlap, no conflict.
    assert_eq!((server.overlapping_logins(PHONE), server.replaced_conflicts(PHONE)), (0, 0));
    client.stop().await;
}

#[tokio::test]
async fn a_frozen_connection_answers_nothing_until_thawed() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = paired_client(&server, &store_in(&dir), PHONE).await;
    client.ping(DEADLINE).await.expect("a live connection answers a ping");
    assert!(!server.frozen(PHONE));

    server.freeze(PHONE).await.expect("freeze");

    assert!(server.frozen(PHONE));
    let unanswered = client.ping(Duration::from_secs(2)).await;
    assert!(matches!(unanswered, Err(IqError::Timeout)), "{unanswered:?}");
    assert!(server.unanswered_pings(PHONE) >= 1);
    let presences = server.presences(PHONE).len();
    client.client().presence().set_unavailable().await.expect("the client's writes do not block");
    server
        .wait_for("the presence discarded", DEADLINE, || server.frozen_frames(PHONE) >= 2)
        .await
        .expect("discarded");
    assert_eq!(server.presences(PHONE).len(), presences, "a frozen connection acts on nothing");
    let message = server.deliver_text(PHONE, CONTACT, Chat::Direct, "3EB0D1", "lost").await;
    assert!(matches!(message, Err(FakeError::ConnectionGone)), "{message:?}");
    assert!(server.logged_in(PHONE), "the socket stays open");

    server.thaw(PHONE).await.expect("thaw");

    assert!(!server.frozen(PHONE));
    client.ping(DEADLINE).await.expect("a thawed connection answers again");
    assert_eq!(server.logins(PHONE), 1, "the client never left");
    assert!(matches!(server.freeze("5511777777777").await, Err(FakeError::NotConnected(_))));
    client.stop().await;
}

/// Slow, by the client's own timers (see the fake server's facts list): 20 s after its first
/// unanswered write plus up to one 15 to 30 s keepalive tick, so 20 to 50 s (23 to 46 s measured).
/// Kept in the suite, within its 90 s budget, because the session host relies on it.
#[tokio::test]
async fn a_client_notices_a_frozen_connection_by_itself_and_logs_in_again() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;
    client.forget_events();

    server.freeze(PHONE).await.expect("freeze");
    let frozen_at = Instant::now();

    let noticed = Duration::from_secs(120);
    server
        .wait_for("the client closing the frozen socket", noticed, || !server.frozen(PHONE))
        .await
        .expect("closed");
    let noticed_after = frozen_at.elapsed();
    let mut disconnected = false;
    client
        .expect("Connected again", DEADLINE, |e| match e {
            Event::Disconnected(_) => {
                disconnected = true;
                None
            }
            Event::Connected(_) => Some(()),
            _ => None,
        })
        .await;
    let connected_after = frozen_at.elapsed();
    eprintln!(
        "frozen connection: closed by the client after {noticed_after:?}, Connected after {connected_after:?}"
    );
    // Frozen right after its login, the client still has IQs out (app-state sync, pre-key upload),
    // which hold its ping back; the dead-socket check fires anyway, 20 s after the first of them.
    assert!(server.frozen_frames(PHONE) >= 1, "the client wrote to the frozen socket and waited");
    assert!(!disconnected, "a dead socket's reconnect is an expected one: no Disconnected event");
    server.wait_logged_in(PHONE, DEADLINE).await.expect("logged in again");
    assert_eq!(server.logins(PHONE), 2);
    assert_eq!(server.overlapping_logins(PHONE), 0, "the client closed the frozen socket before dialling");
    client.stop().await;
}

/// The worst case of the test above, a session idle when its socket went silent: the client
/// waits for a tick with nothing received for 15 s (ticks are 15 to 30 s apart), pings, and gives
/// up 20 s later, so 35 to 65 s after the last frame it got (36 to 48 s measured). To find the
/// client idle the test first waits for its first ping, which comes 15 to 45 s after the login.
#[tokio::test]
#[ignore = "50 to 110 s, over the 90 s budget: waits for the client's first ping, then for its timeout"]
async fn an_idle_client_notices_a_frozen_connection_within_65_s() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;
    let first_ping = Duration::from_secs(45);
    server
        .wait_for("the first keepalive ping", first_ping, || server.answered_pings(PHONE) >= 1)
        .await
        .expect("ping");
    client.forget_events();

    server.freeze(PHONE).await.expect("freeze");
    let frozen_at = Instant::now();

    let noticed = Duration::from_secs(70);
    server
        .wait_for("the client closing the frozen socket", noticed, || !server.frozen(PHONE))
        .await
        .expect("closed");
    let noticed_after = frozen_at.elapsed();
    eprintln!("idle frozen connection: closed by the client after {noticed_after:?}");
    assert!(server.unanswered_pings(PHONE) >= 1, "an idle client notices through its ping");
    client.connected().await;
    assert_eq!(server.overlapping_logins(PHONE), 0);
    client.stop().await;
}
