//! This host's place in the fleet: its heartbeat record, its own view of which other hosts are
//! alive, and the rule for taking an instance's lease (DESIGN.md "Ownership is a lease").
//!
//! A lease is taken only when nobody holds it, or its holder is provably gone: a record of a later
//! start of that host (its epoch moved on), no record at all (it drained or was judged dead and
//! removed), or a beat counter this host saw stand still for the lease period. A live holder keeps
//! it, and the command goes to that holder instead.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ryze_core::domain::{Holder, HostId, HostRecord, InstanceId, Lease, LeaseTiming, Liveness};
use ryze_core::ports::Leases;
use ryze_core::{Error, Result};

/// Shared by the heartbeat task (`fleet/heartbeat.rs`), which beats and looks, and the fleet's
/// loop, which claims, adopts and buries: the locks are held for no await.
pub(crate) struct Membership {
    leases: Arc<dyn Leases>,
    timing: LeaseTiming,
    view: Mutex<View>,
}

struct View {
    record: HostRecord,
    liveness: Liveness,
    /// The hosts this host judged dead at its last look, not yet removed.
    dead: HashSet<Holder>,
    /// The dead hosts this host removed, while a look may still list them (a read that lags the
    /// removal, or a beat's look taken before it): they are not judged dead again.
    buried: HashSet<Holder>,
    /// Every host's record at the last look.
    hosts: Vec<HostRecord>,
}

/// Who may run an instance, as far as this host can tell.
pub(crate) enum Claim {
    /// This host holds the lease (it had it, or just took it).
    Mine(Lease),
    /// A live host holds it; commands go to its channel.
    Elsewhere(HostRecord),
}

impl Membership {
    /// Starts this host's record: a new epoch, so leases of earlier starts are stale.
    pub(crate) async fn join(
        leases: Arc<dyn Leases>,
        id: &HostId,
        capacity: usize,
        channel: &str,
        timing: LeaseTiming,
    ) -> Result<Self> {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        let record = leases.register_host(id, capacity, channel).await?;
        tracing::info!(host = %record.id, epoch = record.epoch, "joined the fleet");
        let view = View {
            record,
            liveness: Liveness::default(),
            dead: HashSet::new(),
            buried: HashSet::new(),
            hosts: Vec::new(),
        };
        Ok(Self { leases, timing, view: Mutex::new(view) })
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn holder(&self) -> Holder {
        self.view().record.holder()
    }

    pub(crate) fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// One heartbeat, then a look at every host: returns the hosts judged dead (never this one).
    /// `Error::HostSuperseded` means this start is no longer the host's: it must stop at once.
    pub(crate) async fn beat(&self, sessions: usize, draining: bool) -> Result<Vec<HostRecord>> {
        let sessions = u32::try_from(sessions).unwrap_or(u32::MAX);
        let record = self.record();
        let record = self.leases.beat(&record, sessions, draining).await?;
        let hosts = self.leases.hosts().await?;
        let mut view = self.view();
        let mut dead = view.liveness.observe(&hosts, Instant::now(), self.timing.lease);
        let View { buried, .. } = &mut *view;
        buried.retain(|holder| hosts.iter().any(|host| host.holder() == *holder));
        dead.retain(|host| host.id != record.id && !buried.contains(&host.holder()));
        view.record = record;
        view.dead = dead.iter().map(HostRecord::holder).collect();
        view.hosts = hosts;
        Ok(dead)
    }

    /// Whether this host already removed `host`: news of its death computed before that is stale.
    pub(crate) fn buried(&self, host: &Holder) -> bool {
        self.view().buried.contains(host)
    }

    /// Every host's record as the last beat saw it, and the ones judged dead then.
    pub(crate) fn last_look(&self) -> (Vec<HostRecord>, HashSet<Holder>) {
        let view = self.view();
        (view.hosts.clone(), view.dead.clone())
    }

    /// Takes `instance`'s lease for this host unless a live host holds it.
    pub(crate) async fn claim(&self, instance: &InstanceId) -> Result<Claim> {
        let me = self.holder();
        // A lost race means somebody else just took it: look again, once or twice.
        for _ in 0..3 {
            let lease = self.leases.lease(instance).await?;
            match &lease.holder {
                Some(holder) if *holder == me => return Ok(Claim::Mine(lease)),
                Some(holder) => {
                    if let Some(owner) = self.live_record(holder).await? {
                        return Ok(Claim::Elsewhere(owner));
                    }
                }
                None => {}
            }
            if let Some(taken) = self.leases.take(instance, &me, &lease).await? {
                return Ok(Claim::Mine(taken));
            }
        }
        Err(Error::LeaseLost)
    }

    /// The record of `holder` if that start of its host still counts as alive.
    async fn live_record(&self, holder: &Holder) -> Result<Option<HostRecord>> {
        if self.view().dead.contains(holder) {
            return Ok(None);
        }
        // A fresh read: a host that started after this one's last look is alive all the same.
        let hosts = self.leases.hosts().await?;
        Ok(hosts.into_iter().find(|host| host.holder() == *holder))
    }

    /// The leases a dead host (or an earlier start of this one) left: what a takeover goes through.
    pub(crate) async fn orphans_of(&self, gone: &Holder) -> Result<Vec<(InstanceId, Lease)>> {
        let mut orphans = self.leases.held_by(&gone.host).await?;
        orphans.retain(|(_, lease)| lease.holder.as_ref().is_some_and(|h| h.epoch <= gone.epoch));
        Ok(orphans)
    }

    /// The leases of this host's earlier starts: the sessions it ran when it last stopped.
    pub(crate) fn earlier_starts(&self) -> Option<Holder> {
        let me = self.holder();
        (me.epoch > 1).then(|| Holder { host: me.host, epoch: me.epoch - 1 })
    }

    /// Takes orphaned leases for this host, one outcome each; `None` where another host was quicker.
    pub(crate) async fn adopt(&self, orphans: &[(InstanceId, Lease)]) -> Vec<Result<Option<Lease>>> {
        self.leases.take_all(orphans, &self.holder()).await
    }

    /// Forgets a dead host once nothing is left under its name.
    pub(crate) async fn bury(&self, gone: &HostRecord) -> Result<()> {
        self.leases.remove_host(&gone.holder()).await?;
        let mut view = self.view();
        view.dead.remove(&gone.holder());
        view.buried.insert(gone.holder());
        tracing::info!(host = %gone.id, epoch = gone.epoch, "dead host removed");
        Ok(())
    }

    /// Leaves the fleet: the record goes, so that nobody waits a lease period to judge it dead.
    pub(crate) async fn leave(&self) -> Result<()> {
        self.leases.remove_host(&self.holder()).await
    }

    pub(crate) fn leases(&self) -> &Arc<dyn Leases> {
        &self.leases
    }

    pub(crate) fn record(&self) -> HostRecord {
        self.view().record.clone()
    }
}
