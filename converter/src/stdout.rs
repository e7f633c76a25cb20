//! Printing to standard output that outlives its reader. `tinyrnn inspect m.trnn | head` closes the
//! pipe early; `println!` would then panic, and a `train` piped that way would die before it writes its
//! blob. These macros stop printing once standard output is gone and let the command finish its work.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to standard output. After a failed write (a closed pipe, a full disk) nothing more is
/// written, and the first failure other than a closed pipe is reported once on standard error.
pub fn write(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if err.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("warning: standard output failed ({err}); nothing more is printed there");
        }
    }
}

/// `print!` that survives a closed standard output: see [`write`](crate::stdout::write).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(::std::format_args!($($arg)*))
    };
}

/// `println!` that survives a closed standard output: see [`write`](crate::stdout::write).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::write(::std::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}
