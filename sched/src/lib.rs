//! kybernetes-sched: the Scheduler trait, the filter/score framework with the upstream plugins, and the loop that binds pods.
