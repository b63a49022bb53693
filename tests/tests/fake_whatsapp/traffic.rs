//! What contacts send a device: calls, direct, group and status messages.

use super::*;

#[tokio::test]
async fn an_offered_call_rings_and_the_server_records_its_rejection() {
    const CALLER: &str = "5511888888888";
    const CALL_ID: &str = "3F2A9C4E1B7D6A0C5E8F2B1D4C7A9E03";
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    server.offer_call(PHONE, CALLER, CALL_ID).await.expect("the call is offered");

    let (from, call_id, creator, offline) = client
        .expect("IncomingCall offer", DEADLINE, |e| match e {
            Event::IncomingCall(call) => match &call.action {
                CallAction::Offer { call_id, call_creator, .. } => {
                    Some((call.from.clone(), call_id.clone(), call_creator.clone(), call.offline))
                }
                _ => None,
            },
            _ => None,
        })
        .await;
    assert_eq!(call_id, CALL_ID);
    assert_eq!(from.to_string(), format!("{CALLER}@s.whatsapp.net"));
    assert_eq!(creator, from, "the caller created the call");
    assert!(!offline, "a live offer rings");
    assert!(server.call_rejections(PHONE).is_empty());

    client.client().voip().reject_call(&call_id, &from, &creator).await.expect("reject sent");

    server
        .wait_for("the call's rejection", DEADLINE, || !server.call_rejections(PHONE).is_empty())
        .await
        .expect("rejected");
    assert_eq!(server.call_rejections(PHONE), [CALL_ID]);
    assert!(matches!(
        server.offer_call("5511777777777", CALLER, CALL_ID).await,
        Err(FakeError::UnknownAccount(_))
    ));
    assert!(matches!(server.offer_call(PHONE, "+55 11", CALL_ID).await, Err(FakeError::BadPhone(_))));
    client.stop().await;
}

#[tokio::test]
async fn a_contacts_direct_messages_arrive_and_the_server_records_their_reading() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    server.deliver_text(PHONE, CONTACT, Chat::Direct, "3EB0A1", "hello").await.expect("delivered");
    let (info, text) = client.text_message("3EB0A1").await;
    assert_eq!(text.as_deref(), Some("hello"));
    assert_eq!(info.source.chat.to_string(), format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(info.source.sender, info.source.chat, "in a direct chat the contact is the chat");
    assert!(!info.source.is_group && !info.source.is_from_me);
    assert_eq!(info.push_name, CONTACT);
    // A second message opens a new session under the contact's same identity.
    server.deliver_text(PHONE, CONTACT, Chat::Direct, "3EB0A2", "again").await.expect("delivered");
    assert_eq!(client.text_message("3EB0A2").await.1.as_deref(), Some("again"));
    assert!(server.read_receipts(PHONE).is_empty());

    client.client().mark_as_read(&info.source.chat, None, &["3EB0A1", "3EB0A2"]).await.expect("read sent");

    server
        .wait_for("the read receipt", DEADLINE, || server.read_receipts(PHONE).len() >= 2)
        .await
        .expect("read");
    assert_eq!(server.read_receipts(PHONE), ["3EB0A1", "3EB0A2"]);
    let nobody = server.deliver_text("5511777777777", CONTACT, Chat::Direct, "3EB0A3", "?").await;
    assert!(matches!(nobody, Err(FakeError::UnknownAccount(_))), "{nobody:?}");
    client.stop().await;
}

#[tokio::test]
async fn a_group_message_arrives_from_its_author() {
    const GROUP: &str = "120363000000000001";
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    let group = Chat::Group(GROUP.to_owned());
    server.deliver_text(PHONE, CONTACT, group.clone(), "3EB0B1", "hi all").await.expect("delivered");
    server.deliver_text(PHONE, CONTACT, group, "3EB0B2", "still me").await.expect("delivered");

    let (info, text) = client.text_message("3EB0B1").await;
    assert_eq!(text.as_deref(), Some("hi all"));
    assert_eq!(info.source.chat.to_string(), format!("{GROUP}@g.us"));
    assert_eq!(info.source.sender.to_string(), format!("{CONTACT}@s.whatsapp.net"));
    assert!(info.source.is_group && !info.source.is_from_me);
    assert_eq!(client.text_message("3EB0B2").await.1.as_deref(), Some("still me"));
    let sender = info.source.sender.clone();
    client.client().mark_as_read(&info.source.chat, Some(&sender), &["3EB0B1"]).await.expect("read sent");
    server
        .wait_for("the read receipt", DEADLINE, || !server.read_receipts(PHONE).is_empty())
        .await
        .expect("read");
    assert_eq!(server.read_receipts(PHONE), ["3EB0B1"]);
    let bad = server.deliver_text(PHONE, CONTACT, Chat::Group("g@g.us".into()), "3EB0B3", "?").await;
    assert!(matches!(bad, Err(FakeError::BadGroup(_))), "{bad:?}");
    client.stop().await;
}

#[tokio::test]
async fn a_status_update_arrives_from_its_author() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    server.deliver_text(PHONE, CONTACT, Chat::Status, "3EB0C1", "my day").await.expect("delivered");

    let (info, text) = client.text_message("3EB0C1").await;
    assert_eq!(text.as_deref(), Some("my day"));
    assert_eq!(info.source.chat.to_string(), "status@broadcast");
    assert_eq!(info.source.sender.to_string(), format!("{CONTACT}@s.whatsapp.net"));
    assert!(info.source.is_group && !info.source.is_from_me);
    client.stop().await;
}
