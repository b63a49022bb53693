//! Host channels in memory: one process is the whole deployment, so a channel is an in-process
//! queue in a map that every host of the process shares through [`crate::ports::Ports`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{InProcessQueue, QUEUE_CAPACITY};
use crate::domain::{HostId, SessionCommand};
use crate::ports::{CommandChannels, CommandQueue};
use crate::{Error, Result};

#[derive(Default)]
pub struct InProcessChannels {
    channels: Mutex<HashMap<String, Arc<InProcessQueue<SessionCommand>>>>,
}

impl InProcessChannels {
    fn map(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Arc<InProcessQueue<SessionCommand>>>>> {
        self.channels.lock().map_err(|_| Error::storage("channels poisoned"))
    }
}

#[async_trait]
impl CommandChannels for InProcessChannels {
    async fn open(&self, host: &HostId) -> Result<String> {
        let address = format!("local:{host}");
        self.map()?.entry(address.clone()).or_insert_with(|| Arc::new(InProcessQueue::new(QUEUE_CAPACITY)));
        Ok(address)
    }

    fn channel(&self, address: &str) -> Result<Arc<CommandQueue>> {
        match self.map()?.get(address) {
            Some(queue) => Ok(queue.clone()),
            // Closed, or opened by a process that is gone: what is sent there is lost to nobody.
            None => Err(Error::storage(format!("no channel {address}"))),
        }
    }

    async fn close(&self, address: &str) -> Result<()> {
        self.map()?.remove(address);
        Ok(())
    }
}
