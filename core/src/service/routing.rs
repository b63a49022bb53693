//! Where a session command goes: to the live host that holds the instance, through that host's own
//! channel, or else to the shared command queue, where a host with room takes it.
//!
//! The API and the hosts route the same way: a host that receives a command for a session another
//! live host holds (the lease moved while the command was on its way) passes it on with this.

use crate::Result;
use crate::domain::{InstanceId, SessionCommand};
use crate::ports::Ports;

/// Sends `command` to its instance's owner, or to the shared queue when it has none. A channel
/// that cannot be reached falls back to the shared queue: its host is gone or going, and whoever
/// takes the instance over takes the command too.
pub async fn send_command(ports: &Ports, command: &SessionCommand) -> Result<()> {
    match owner_channel(ports, command.instance()).await {
        Ok(Some(address)) => {
            let sent = match ports.channels.channel(&address) {
                Ok(channel) => channel.send(command).await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, %address, "owner's channel unreachable; sent to the shared queue")
                }
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "owner unknown; sent to the shared queue"),
    }
    ports.commands.send(command).await
}

/// The channel of the host whose current start holds `instance`'s lease, if its record is there.
pub async fn owner_channel(ports: &Ports, instance: &InstanceId) -> Result<Option<String>> {
    let Some(holder) = ports.leases.lease(instance).await?.holder else { return Ok(None) };
    let hosts = ports.leases.hosts().await?;
    Ok(hosts
        .into_iter()
        .find(|host| host.holder() == holder)
        .map(|host| host.channel)
        .filter(|c| !c.is_empty()))
}
