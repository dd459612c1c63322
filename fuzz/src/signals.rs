//! Saving the input in flight when the process dies of a fatal signal.
//!
//! A panic is caught by `catch_unwind`, but an abort (a Rust stack overflow
//! or allocation failure ends in SIGABRT) or a fault in native code
//! (croaring is C) kills the process. The runner points [`set_current`] at
//! each input before running it; a handler for SIGABRT, SIGSEGV, SIGBUS,
//! SIGILL and SIGFPE writes those bytes to `DIR/crash-signal-current` with
//! async-signal-safe calls only (`open`, `write`), then lets the default
//! action kill the process.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Marks `data` as the input in flight. It must stay alive and unmoved
/// until the next call or [`clear_current`].
pub fn set_current(data: &[u8]) {
    INPUT_LEN.store(0, Ordering::SeqCst);
    INPUT.store(data.as_ptr() as *mut u8, Ordering::SeqCst);
    INPUT_LEN.store(data.len(), Ordering::SeqCst);
}

/// No input in flight.
pub fn clear_current() {
    INPUT_LEN.store(0, Ordering::SeqCst);
    INPUT.store(std::ptr::null_mut(), Ordering::SeqCst);
}

extern "C" fn on_fatal(sig: libc::c_int) {
    let path = PATH.load(Ordering::SeqCst);
    let data = INPUT.load(Ordering::SeqCst);
    let len = INPUT_LEN.load(Ordering::SeqCst);
    let msg: &[u8] = b"\ncheckraft-fuzz: fatal signal while running an input; it was saved as crash-signal-current in the artifacts directory\n";
    // SAFETY: only async-signal-safe calls on memory that outlives them:
    // the leaked path, and the runner's input buffer which is not touched
    // while the target runs.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        if !path.is_null() && !data.is_null() {
            let fd = libc::open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644);
            if fd >= 0 {
                libc::write(fd, data.cast(), len);
                libc::close(fd);
            }
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Installs the handlers, saving into `dir` (created here).
pub fn install(dir: &Path) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let path = dir.join("crash-signal-current");
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    PATH.store(c.into_raw(), Ordering::SeqCst);
    for sig in [
        libc::SIGABRT,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
    ] {
        // SAFETY: a plain sigaction install of an extern "C" handler; it
        // runs on the alternate stack (set up by the Rust runtime for the
        // main thread) so a stack overflow can still be reported.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
