//! The session host: the long-running side of the system that holds the WhatsApp sockets.
//!
//! It takes `Connect` and `Reconnect` commands from the command queue while it has capacity, runs one
//! whatsapp-rust client per instance behind an actor, answers connect requests with QR or pairing
//! codes, writes state changes back through the registry, persists credential stores through the
//! blob store, and publishes `instance.state` events. It depends on `ryze-core` only, never on the
//! HTTP side. Its implementation is the subject of the session-host issue; until it lands nothing
//! consumes the command queue, and connect calls end in 500 `Failed to generate QR code` once their
//! wait budget is spent.
