//! The scheduling priority of the gateway's background threads: the
//! request log's writer and forwarder, and the Kafka client's threads.
//!
//! They share the cores with the proxy's workers. At the scheduler's
//! default they run as equals: a worker woken by a request's bytes could
//! wait out a log batch's slice (`load-tests/timeline.sh` showed requests
//! held several milliseconds with the worker runnable). A higher nice value
//! makes the scheduler give the core to the woken worker first. It is a
//! weight, not a ban: under full load the background threads still get
//! their share (nice 10 against 0 is about a tenth of a core), more than
//! the log needs at the gateway's peak (about 5%).

/// How much nicer the background threads are than the process (the
/// workers): 10, so 0 becomes 10. At most 19, the nicest there is.
pub const BACKGROUND_NICE: i32 = 10;

/// The nice value of a background thread started by a thread at `nice`.
pub fn background_nice(nice: i32) -> i32 {
    (nice + BACKGROUND_NICE).min(19)
}

/// Lowers the calling thread's priority by `BACKGROUND_NICE`. Threads it
/// starts afterwards inherit it. On failure (a kernel that refuses) the
/// thread goes on at its priority; a debug line says so.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        let nice = background_nice(current_nice());
        // SAFETY: gettid and setpriority take and return plain integers;
        // on Linux a thread id names that thread alone.
        let result = unsafe {
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if result != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a background thread's priority"
            );
        }
    }
}

/// The calling thread's nice value (Linux; 0 elsewhere).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above; getpriority returns the nice value, and -1 is
        // a valid one, so errno is not consulted (the call cannot fail for
        // the calling thread).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_the_calling_thread_and_what_it_starts_only() {
        let before = current_nice();
        let (own, child) = std::thread::spawn(|| {
            lower_current_thread();
            let child = std::thread::spawn(current_nice).join().unwrap();
            (current_nice(), child)
        })
        .join()
        .unwrap();
        assert_eq!(own, background_nice(before));
        assert!(own > before || before == 19, "{own} after {before}");
        assert_eq!(child, own, "a thread inherits its creator's priority");
        assert_eq!(current_nice(), before, "the caller's thread is unchanged");
    }
}
