//! A scheduling profile: the scheduler that serves one `spec.schedulerName` (upstream's
//! `profile.Map` entry, a framework per profile).

use std::sync::Arc;

use crate::framework::Scheduler;

/// One scheduler name and the [`Scheduler`] that places its pods. The
/// [`SchedulerLoop`](crate::SchedulerLoop) serves several at once over one queue and one
/// snapshot, as upstream's kube-scheduler serves its profiles.
///
/// ```
/// use kybernetes_sched::{Framework, Profile};
/// let packing = Profile::new("packing-scheduler", Framework::default_plugins().without("NodeResourcesBalancedAllocation"));
/// assert_eq!(packing.scheduler_name(), "packing-scheduler");
/// ```
#[derive(Clone)]
pub struct Profile {
    name: String,
    scheduler: Arc<dyn Scheduler>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("scheduler_name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// The profile for pods whose `spec.schedulerName` is `scheduler_name`.
    pub fn new(scheduler_name: impl Into<String>, scheduler: impl Scheduler + 'static) -> Profile {
        Profile::shared(scheduler_name, Arc::new(scheduler))
    }

    /// [`new`](Profile::new) with a scheduler that is already shared.
    pub fn shared(scheduler_name: impl Into<String>, scheduler: Arc<dyn Scheduler>) -> Profile {
        Profile {
            name: scheduler_name.into(),
            scheduler,
        }
    }

    /// The `spec.schedulerName` this profile serves.
    pub fn scheduler_name(&self) -> &str {
        &self.name
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.scheduler
    }
}
