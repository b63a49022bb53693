//! Which hosts offer themselves for scale-in when the fleet has more hosts than its sessions need.
//!
//! ECS stops only unprotected tasks on a scale-in, and every host that holds a session keeps its
//! task protected (`protection.rs`): without this, a fleet that grew for a peak would stay at its
//! high-water mark, since nothing would ever be free to stop. Target tracking on `SessionsHeld`
//! wants `ceil(sessions / SessionsPerTaskTarget)` tasks; the hosts beyond that, least loaded
//! first, lift their protection once the surplus has lasted a while (five minutes by default,
//! [`crate::HostConfig::surplus_lasts`]), and ECS may then
//! stop them: each drains on SIGTERM and hands its sessions over, no QR. A host that stops being
//! surplus (the fleet grew busy again, a peer left) asks for protection again at once.
//!
//! Every host judges from the same records (the last look of its beat), so the fleet agrees on
//! who is surplus without talking; a disagreement for a beat only leaves one more or one fewer
//! host unprotected for a moment.

use std::collections::HashSet;
use std::time::Duration;

use ryze_core::domain::{Holder, HostRecord};
use tokio::time::Instant;

/// One host's view of whether it is surplus, with the time it has been.
#[derive(Debug)]
pub(crate) struct Consolidation {
    /// `SessionsPerTaskTarget`: none for a host outside an autoscaled service.
    target: Option<usize>,
    lasts: Duration,
    surplus_since: Option<Instant>,
}

impl Consolidation {
    pub(crate) fn new(target: Option<usize>, lasts: Duration) -> Self {
        Self { target: target.filter(|t| *t > 0), lasts, surplus_since: None }
    }

    /// After a look at the fleet: whether this host's task may go unprotected now.
    pub(crate) fn observe(
        &mut self,
        hosts: &[HostRecord],
        dead: &HashSet<Holder>,
        me: &Holder,
        now: Instant,
    ) -> bool {
        let surplus = self.target.is_some_and(|target| is_surplus(hosts, dead, me, target));
        match (surplus, self.surplus_since) {
            (false, _) => self.surplus_since = None,
            (true, None) => {
                tracing::info!("this host is beyond what the fleet's sessions need");
                self.surplus_since = Some(now);
            }
            (true, Some(_)) => {}
        }
        self.surplus_since.is_some_and(|since| now.duration_since(since) >= self.lasts)
    }
}

/// Whether `me` is among the hosts beyond `ceil(sessions / target)`, least loaded first (ties by
/// id, so that every host ranks the same). Dead, draining and never-beaten hosts count for
/// nothing.
fn is_surplus(hosts: &[HostRecord], dead: &HashSet<Holder>, me: &Holder, target: usize) -> bool {
    let mut live: Vec<&HostRecord> =
        hosts.iter().filter(|h| !dead.contains(&h.holder()) && !h.draining && h.beat > 0).collect();
    if !live.iter().any(|h| h.holder() == *me) {
        return false;
    }
    let sessions: usize = live.iter().map(|h| h.sessions as usize).sum();
    let needed = sessions.div_ceil(target).max(1);
    let surplus = live.len().saturating_sub(needed);
    live.sort_by(|a, b| a.sessions.cmp(&b.sessions).then_with(|| a.id.as_str().cmp(b.id.as_str())));
    live.iter().take(surplus).any(|h| h.holder() == *me)
}

#[cfg(test)]
mod tests {
    use ryze_core::domain::HostId;

    use super::*;

    const SURPLUS_LASTS: Duration = Duration::from_secs(300);

    fn host(id: &str, sessions: u32) -> HostRecord {
        HostRecord {
            id: HostId::new(id).unwrap(),
            epoch: 1,
            beat: 3,
            capacity: 10_000,
            sessions,
            draining: false,
            channel: format!("{id}-channel"),
        }
    }

    fn surplus(hosts: &[HostRecord], me: &str, target: usize) -> bool {
        is_surplus(hosts, &HashSet::new(), &host(me, 0).holder(), target)
    }

    #[test]
    fn the_least_loaded_hosts_beyond_the_need_are_surplus() {
        // 1,000 sessions at 900 a task need 2 hosts of the 4.
        let hosts = [host("a", 600), host("b", 250), host("c", 100), host("d", 50)];
        assert!(surplus(&hosts, "d", 900));
        assert!(surplus(&hosts, "c", 900));
        assert!(!surplus(&hosts, "b", 900));
        assert!(!surplus(&hosts, "a", 900));
    }

    #[test]
    fn a_fleet_at_its_need_has_no_surplus_and_one_host_always_stays() {
        let busy = [host("a", 900), host("b", 850)];
        assert!(!surplus(&busy, "b", 900));
        let idle = [host("a", 0), host("b", 0)];
        assert_eq!((surplus(&idle, "a", 900), surplus(&idle, "b", 900)), (true, false));
        assert!(!surplus(&[host("a", 0)], "a", 900));
    }

    #[test]
    fn dead_draining_and_unknown_hosts_count_for_nothing() {
        let mut draining = host("b", 0);
        draining.draining = true;
        let dead = host("c", 0);
        let hosts = [host("a", 10), draining, dead.clone()];
        let gone: HashSet<Holder> = [dead.holder()].into();
        assert!(!is_surplus(&hosts, &gone, &host("a", 0).holder(), 900));
        assert!(!is_surplus(&hosts, &gone, &host("z", 0).holder(), 900));
    }

    #[test]
    fn protection_lifts_only_after_the_surplus_lasted() {
        let hosts = [host("a", 600), host("b", 10)];
        let me = host("b", 0).holder();
        let start = Instant::now();
        let mut consolidation = Consolidation::new(Some(900), SURPLUS_LASTS);
        assert!(!consolidation.observe(&hosts, &HashSet::new(), &me, start));
        assert!(!consolidation.observe(&hosts, &HashSet::new(), &me, start + SURPLUS_LASTS / 2));
        assert!(consolidation.observe(&hosts, &HashSet::new(), &me, start + SURPLUS_LASTS));
        // Busy again: protected at once, and the wait starts over.
        let busy = [host("a", 900), host("b", 400)];
        assert!(!consolidation.observe(&busy, &HashSet::new(), &me, start + SURPLUS_LASTS * 2));
        assert!(!consolidation.observe(&hosts, &HashSet::new(), &me, start + SURPLUS_LASTS * 2));
        // Outside an autoscaled service nothing is ever surplus.
        let mut alone = Consolidation::new(None, SURPLUS_LASTS);
        assert!(!alone.observe(&hosts, &HashSet::new(), &me, start + SURPLUS_LASTS * 3));
    }
}
