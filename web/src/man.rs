//! Manual pages generated from a binary's clap definition (`apos-edge man
//! --out DIR`, `apos-hub man --out DIR`; the packages ship them in
//! /usr/share/man/man1): one roff page per command and subcommand, named
//! like git's (`apos-edge.1`, `apos-edge-run.1`, `apos-edge-user-add.1`).
//! Hidden subcommands (the `man` command itself) get no page.

use std::path::{Path, PathBuf};

/// Write the pages of `cmd` and of every visible subcommand into `out`
/// (created if missing). Returns the files written, parents first.
pub fn write_pages(cmd: clap::Command, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    // No `help` subcommand page: `--help` exists on every command.
    let mut cmd = cmd.disable_help_subcommand(true);
    // Building gives every subcommand its display name ("apos-edge-user-add").
    cmd.build();
    // Every page's footer names the program and its version (a
    // subcommand has no version of its own).
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut written = Vec::new();
    write(&cmd, &source, out, &mut written)?;
    Ok(written)
}

fn write(
    cmd: &clap::Command,
    source: &str,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .source(source)
        .manual("APOS");
    written.push(page.generate_to(out)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write(sub, source, out, written)?;
    }
    Ok(())
}

/// The page names `write_pages` produces for `cmd`: the command's name, and
/// for each visible subcommand its path joined with `-`. Tests compare
/// them with the files written.
pub fn page_names(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        out.push(format!("{name}.1"));
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            walk(sub, &name, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, "", &mut out);
    out
}

/// Arguments and subcommands of `cmd` (recursively) that have no help
/// text, as "command path: argument". `--help` must explain everything.
pub fn undocumented(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let builtin = matches!(a.get_id().as_str(), "help" | "version");
            if !builtin && !a.is_hide_set() && a.get_help().is_none() {
                out.push(format!("{path}: {}", a.get_id()));
            }
        }
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                out.push(format!("{p}: (the subcommand itself)"));
            }
            walk(sub, &p, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, cmd.get_name(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("tool")
            .version("1.0")
            .about("A tool")
            .subcommand(
                clap::Command::new("run")
                    .about("Run it")
                    .arg(clap::Arg::new("config").long("config").help("Config file")),
            )
            .subcommand(
                clap::Command::new("user")
                    .about("Users")
                    .subcommand(clap::Command::new("add").about("Add one"))
                    .subcommand(clap::Command::new("list").arg(clap::Arg::new("all").long("all"))),
            )
            .subcommand(clap::Command::new("man").hide(true))
    }

    #[test]
    fn one_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(cli(), dir.path()).unwrap();
        let mut names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected = page_names(&cli());
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(
            expected,
            [
                "tool-run.1",
                "tool-user-add.1",
                "tool-user-list.1",
                "tool-user.1",
                "tool.1"
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("tool-user-add.1")).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH tool-user-add 1"), "{page}");
        assert!(page.contains("Add one"), "{page}");
        assert!(
            page.contains("\"tool 1.0\""),
            "footer names the program: {page}"
        );
    }

    #[test]
    fn missing_help_is_found() {
        assert_eq!(
            undocumented(&cli()),
            [
                "tool user list: (the subcommand itself)",
                "tool user list: all"
            ]
        );
    }
}
