//! The admin CLI's stdout. `println!` panics when the reader has gone (`tritontube admin
//! status ADDR | head -3`); these return [`StdoutClosed`] instead, and the CLI then ends
//! quietly with status 141, as `cat`, `ls` or `seq` do in such a pipeline: they are
//! killed by SIGPIPE, which a shell reports as 128 + 13. Rust ignores SIGPIPE, so the
//! status is given by hand; `set -o pipefail` scripts still see that output was cut
//! short. Restoring SIGPIPE instead would also kill the CLI on a gRPC socket its peer
//! closed, before it could say why.

use std::fmt;
use std::io::{self, Write};

/// The status a process killed by SIGPIPE ends with, as shells report it.
pub const BROKEN_PIPE_STATUS: i32 = 128 + 13;

/// Stdout's reader closed the pipe: nothing more can be printed.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Writes `text` to stdout; a closed pipe is [`StdoutClosed`].
pub fn write_stdout(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
            _ => anyhow::Error::new(e).context("writing to stdout"),
        })
}

/// `print!` that returns an error rather than panicking (see the module's note).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::admin_cli::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns an error rather than panicking (see the module's note).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::admin_cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
