//! The original Go tools' flag style: one dash before a long flag (`-host localhost`,
//! `-port=8099`). clap reads `-port` as the short flags `-p -o -r -t`, so the command line
//! is rewritten before clap sees it, for the long flags the named subcommand really has.

use std::collections::HashSet;
use std::ffi::OsString;

/// The subcommands whose original Go tools took single-dash long flags.
const GO_STYLE_SUBCOMMANDS: &[&str] = &["storage", "web", "admin"];

/// Returns `args` (program name first) with every `-name` / `-name=value` turned into
/// `--name…` when `name` is a long flag of the subcommand given first. Anything after `--`,
/// single-letter flags and unknown names are left for clap to judge.
pub fn double_dash_long_flags(cli: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let Some(subcommand) = args
        .get(1)
        .and_then(|arg| arg.to_str())
        .filter(|name| GO_STYLE_SUBCOMMANDS.contains(name))
        .and_then(|name| cli.find_subcommand(name))
    else {
        return args;
    };
    let mut long_flags = HashSet::new();
    collect_long_flags(subcommand, &mut long_flags);
    let mut rewritten = Vec::with_capacity(args.len());
    let mut after_separator = false;
    for arg in args {
        if after_separator {
            rewritten.push(arg);
            continue;
        }
        match arg.to_str() {
            Some("--") => {
                after_separator = true;
                rewritten.push(arg);
            }
            Some(text) if is_single_dash_long_flag(text, &long_flags) => {
                rewritten.push(OsString::from(format!("-{text}")));
            }
            _ => rewritten.push(arg),
        }
    }
    rewritten
}

fn is_single_dash_long_flag(arg: &str, long_flags: &HashSet<String>) -> bool {
    let Some(flag) = arg.strip_prefix('-') else {
        return false;
    };
    if flag.starts_with('-') {
        return false;
    }
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    name.len() > 1 && long_flags.contains(name)
}

fn collect_long_flags(command: &clap::Command, into: &mut HashSet<String>) {
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            into.insert(long.to_owned());
        }
        for alias in arg.get_all_aliases().into_iter().flatten() {
            into.insert(alias.to_owned());
        }
    }
    for nested in command.get_subcommands() {
        collect_long_flags(nested, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cli() -> Command {
        let flags = |name: &'static str| {
            Command::new(name)
                .arg(Arg::new("host").long("host"))
                .arg(Arg::new("port").long("port"))
                .arg(
                    Arg::new("dry-run")
                        .long("dry-run")
                        .action(ArgAction::SetTrue),
                )
                .arg(Arg::new("dir"))
        };
        Command::new("tritontube")
            .subcommand(flags("storage"))
            .subcommand(flags("web"))
            .subcommand(Command::new("admin").subcommand(flags("repair")))
            .subcommand(flags("up"))
    }

    fn rewrite(line: &[&str]) -> Vec<String> {
        let args = line.iter().map(OsString::from).collect();
        double_dash_long_flags(&cli(), args)
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_of_the_go_tools_get_two_dashes() {
        assert_eq!(
            rewrite(&["tt", "storage", "-host", "localhost", "-port", "8099", "d"]),
            [
                "tt",
                "storage",
                "--host",
                "localhost",
                "--port",
                "8099",
                "d"
            ]
        );
        assert_eq!(
            rewrite(&["tt", "web", "-port=8098", "d"]),
            ["tt", "web", "--port=8098", "d"]
        );
        assert_eq!(
            rewrite(&["tt", "admin", "repair", "-dry-run"]),
            ["tt", "admin", "repair", "--dry-run"]
        );
    }

    #[test]
    fn other_arguments_are_left_for_clap() {
        // Double dashes, short flags, unknown names, values and anything after `--`.
        let line = [
            "tt", "storage", "--host", "h", "-h", "-colour", "-7", "--", "-port",
        ];
        assert_eq!(rewrite(&line), line);
    }

    #[test]
    fn subcommands_of_later_tools_keep_clap_rules() {
        let line = ["tt", "up", "-port", "1"];
        assert_eq!(rewrite(&line), line);
    }
}
