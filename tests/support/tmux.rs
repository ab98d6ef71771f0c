//! A private tmux server running the real console, for tests that type like an operator
//! and read the screen with capture-pane.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Upper bound for each wait; a healthy run needs a few seconds. Only a guard against
/// hanging forever, never a measurement.
pub const PATIENCE: Duration = Duration::from_secs(90);
pub const PROMPT: &str = "console-test$";

/// A private tmux server (its own socket) with one detached session; killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `name` keeps the tmux servers of tests running at once apart.
    pub fn start(name: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("tritontube-console-{name}-{}", std::process::id()),
        };
        let shell = format!(
            "env -i PATH=/usr/bin:/bin HOME=/tmp TERM=xterm-256color PS1='{PROMPT} ' bash --norc --noprofile"
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &shell,
        ]);
        tmux
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Key names as tmux knows them (`Enter`, `Escape`, `a`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Text typed as is.
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "console", "-l", text]);
    }

    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "console"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the shell, then runs `tritontube tui ARGS` in it.
    pub async fn run_console(&self, args: &str) {
        self.wait_for("the shell prompt", |s| s.contains(PROMPT))
            .await;
        self.type_text(&format!("{} tui {args}", env!("CARGO_BIN_EXE_tritontube")));
        self.keys(&["Enter"]);
    }

    /// Polls the screen until `done` holds; panics with the last screen after PATIENCE.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "gave up waiting for {what}; the screen shows:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

pub fn last_line(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}
