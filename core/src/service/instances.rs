//! The instance service: create, list, delete and configure instances on behalf of a caller.
//!
//! Connect, reconnect and logout, which involve the session hosts, are in `sessions.rs`.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{
    Instance, InstanceChange, InstanceId, InstanceName, InstanceState, ProxyConfig, S3Config, SessionCommand,
    Settings, SettingsPatch,
};
use crate::outbound::OutboundClient;
use crate::ports::{BlobKey, Ports};
use crate::secrets::{Keyring, Purpose};
use crate::service::sessions::ConnectPolicy;
use crate::service::{Caller, CreateInstance, ProxyInput, S3Input, Scope};
use crate::service::{chatwoot, routing};
use crate::{Error, Result};

/// A created instance and its token in clear, shown this once.
#[derive(Debug)]
pub struct CreatedInstance {
    pub instance: Arc<Instance>,
    pub token: String,
    /// The inline webhook's signing secret, shown this once.
    pub signing_secret: Option<String>,
    /// Why the inline webhook's URL cannot be reached from here (the target-address guard, a host
    /// that does not resolve); it is stored all the same.
    pub webhook_error: Option<String>,
}

pub struct InstanceService {
    pub(super) ports: Ports,
    pub(super) keys: Arc<Keyring>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) connect: ConnectPolicy,
    pub(super) outbound: OutboundClient,
}

impl InstanceService {
    pub fn new(
        ports: Ports,
        keys: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        connect: ConnectPolicy,
        outbound: OutboundClient,
    ) -> Self {
        Self { ports, keys, clock, connect, outbound }
    }

    /// Creates an instance in the caller's account, within its quota, then links it to its Chatwoot
    /// inbox when Chatwoot is enabled. The instance is created whether or not linking works: the
    /// outcome is on its Chatwoot configuration (status, inbox or error).
    #[tracing::instrument(skip_all, fields(account = %caller.account.id))]
    pub async fn create(&self, caller: &Caller, input: CreateInstance) -> Result<CreatedInstance> {
        caller.require_account_scope()?;
        let new = input.validate(&caller.account.id, &self.keys, self.clock.now())?;
        self.ports.registry.insert_instance(&new.instance, caller.account.limits.instance_quota).await?;
        tracing::info!(instance = %new.instance.id, name = %new.instance.name, "instance created");
        let webhook_error = match new.instance.webhooks.iter().find(|w| w.enabled) {
            Some(webhook) => self.outbound.check_url(&webhook.url).await.err().map(|e| e.to_string()),
            None => None,
        };
        let instance = self.link_chatwoot(Arc::new(new.instance)).await;
        Ok(CreatedInstance { instance, token: new.token, signing_secret: new.signing_secret, webhook_error })
    }

    /// Links `instance` to its Chatwoot inbox (a no-op without Chatwoot) and stores the outcome.
    async fn link_chatwoot(&self, instance: Arc<Instance>) -> Arc<Instance> {
        let Some(config) = instance.chatwoot.clone().filter(|c| c.enabled) else { return instance };
        let outcome = chatwoot::link_inbox(&self.outbound, &self.keys, &config).await;
        match &outcome {
            Ok(inbox) => tracing::info!(instance = %instance.id, inbox, "chatwoot inbox linked"),
            Err(error) => tracing::warn!(instance = %instance.id, %error, "chatwoot inbox not linked"),
        }
        let config = chatwoot::linked(config, &outcome);
        match self.change(&instance, InstanceChange::Chatwoot(Some(config.clone()))).await {
            Ok(updated) => updated,
            Err(error) => {
                // The instance exists: report the outcome anyway; the record keeps its first status.
                tracing::warn!(instance = %instance.id, %error, "chatwoot link outcome not stored");
                let mut reported = Arc::unwrap_or_clone(instance);
                reported.chatwoot = Some(config);
                Arc::new(reported)
            }
        }
    }

    /// The caller's instances: its own only for an instance token; for an account token all of them,
    /// or those named in `filter` (comma-separated). One name that does not exist is
    /// `InstanceNotFound`; unknown names in a list are skipped.
    pub async fn list(&self, caller: &Caller, filter: Option<&str>) -> Result<Vec<Arc<Instance>>> {
        if let Scope::Instance(id) = &caller.scope {
            return Ok(vec![self.own_instance(id).await?]);
        }
        let names: Vec<&str> =
            filter.unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()).fold(
                Vec::new(),
                |mut names, name| {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                    names
                },
            );
        // A filter only looks: a name that cannot exist is one that is not found, not a 400.
        let listed = |name| async move {
            match self.target(caller, name).await {
                Err(Error::InvalidName) => Err(Error::InstanceNotFound),
                found => found,
            }
        };
        match names.as_slice() {
            [] => self.ports.registry.instances(&caller.account.id).await,
            [only] => Ok(vec![listed(only).await?]),
            many => {
                let mut found = Vec::with_capacity(many.len());
                for name in many {
                    match listed(name).await {
                        Ok(instance) => found.push(instance),
                        Err(Error::InstanceNotFound) => {}
                        Err(other) => return Err(other),
                    }
                }
                Ok(found)
            }
        }
    }

    /// Removes an instance and everything kept for it. A host running its session is told to close
    /// it (logging the device out); the credential store goes before the record, so a failure leaves
    /// a record that a retried delete can still find.
    #[tracing::instrument(skip_all, fields(account = %caller.account.id))]
    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<InstanceId> {
        caller.require_account_scope()?;
        let instance = self.target(caller, name).await?;
        routing::send_command(&self.ports, &SessionCommand::Delete { instance: instance.id.clone() }).await?;
        self.ports.blobs.delete(&BlobKey::session_store(&instance.id)).await?;
        self.ports.registry.delete_instance(&instance.id).await?;
        self.ports.delivery_log.delete_instance(&instance.id).await?;
        tracing::info!(instance = %instance.id, "instance deleted");
        Ok(instance.id.clone())
    }

    pub async fn settings(&self, caller: &Caller, name: &str) -> Result<Settings> {
        Ok(self.target(caller, name).await?.settings.clone())
    }

    pub async fn update_settings(
        &self,
        caller: &Caller,
        name: &str,
        patch: SettingsPatch,
    ) -> Result<Settings> {
        let instance = self.target(caller, name).await?;
        let settings = patch.apply(instance.settings.clone())?;
        let updated = self.change(&instance, InstanceChange::Settings(settings)).await?;
        // A live session applies them at once; without one they take effect at the next start.
        let command = SessionCommand::ApplySettings {
            instance: instance.id.clone(),
            settings: updated.settings.clone(),
        };
        if let Err(error) = routing::send_command(&self.ports, &command).await {
            tracing::warn!(instance = %instance.id, %error, "settings stored but not sent to the session host");
        }
        Ok(updated.settings.clone())
    }

    pub async fn proxy(&self, caller: &Caller, name: &str) -> Result<Option<ProxyConfig>> {
        Ok(self.target(caller, name).await?.proxy.clone())
    }

    pub async fn set_proxy(
        &self,
        caller: &Caller,
        name: &str,
        input: ProxyInput,
    ) -> Result<Option<ProxyConfig>> {
        let instance = self.target(caller, name).await?;
        let proxy = input.into_config(&self.keys)?;
        let updated = self.change(&instance, InstanceChange::Proxy(proxy)).await?;
        // A live session dials again through the new proxy; without one it is used at the next start.
        if matches!(updated.connection.state, InstanceState::Connected | InstanceState::Connecting) {
            let command = SessionCommand::Redial { instance: instance.id.clone() };
            if let Err(error) = routing::send_command(&self.ports, &command).await {
                tracing::warn!(instance = %instance.id, %error, "proxy stored but not sent to the session host");
            }
        }
        Ok(updated.proxy.clone())
    }

    pub async fn s3(&self, caller: &Caller, name: &str) -> Result<Option<S3Config>> {
        Ok(self.target(caller, name).await?.s3.clone())
    }

    pub async fn set_s3(&self, caller: &Caller, name: &str, input: S3Input) -> Result<Option<S3Config>> {
        let instance = self.target(caller, name).await?;
        let s3 = input.into_config(&self.keys)?;
        Ok(self.change(&instance, InstanceChange::S3(s3)).await?.s3.clone())
    }

    /// The instance token in clear, for the views that show it again.
    pub fn reveal_token(&self, instance: &Instance) -> Result<String> {
        self.keys.open(Purpose::InstanceToken, &instance.token)
    }

    /// The instance `name` in the caller's reach. An instance token naming any other instance is
    /// refused before anything is looked up, so it learns nothing about its siblings.
    pub(super) async fn target(&self, caller: &Caller, name: &str) -> Result<Arc<Instance>> {
        if name.is_empty() {
            return Err(Error::NameRequired);
        }
        // A name that cannot exist is the client's mistake, whatever the token: 400, not 404.
        let name = InstanceName::parse(name)?;
        match &caller.scope {
            Scope::Instance(id) => {
                let own = self.own_instance(id).await?;
                if own.name != name {
                    return Err(Error::InstanceMismatch);
                }
                Ok(own)
            }
            Scope::Account => {
                let instance = self.ports.registry.instance_by_name(&caller.account.id, &name).await?;
                instance.filter(|i| caller.may_access(i)).ok_or(Error::InstanceNotFound)
            }
        }
    }

    /// The instance of an instance token. Gone means the token is too (deleted with it).
    async fn own_instance(&self, id: &InstanceId) -> Result<Arc<Instance>> {
        self.ports.registry.instance(id).await?.ok_or(Error::InvalidToken)
    }

    pub(super) async fn change(&self, instance: &Instance, change: InstanceChange) -> Result<Arc<Instance>> {
        self.ports.registry.update_instance(&instance.id, change, self.clock.now()).await
    }
}
