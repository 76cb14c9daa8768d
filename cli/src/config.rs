//! `--config FILE`: the same settings as the flags, as TOML keys named like the flags
//! (`node-id = 2`, `initial-cluster = "1=...,2=..."`, `syslog-tcp = "0.0.0.0:6514"`). Flags on
//! the command line win over the file.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};

/// Returns `args` with the keys of the `--config` file (if one is given after the subcommand)
/// inserted as flags right after the subcommand, so that flags given later override them.
pub fn expand(args: Vec<OsString>, cli: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    let Some((position, path)) = find_config(&args) else {
        return Ok(args);
    };
    // The subcommand's own flags are the settings a file may hold.
    let subcommand = args
        .get(1)
        .and_then(|name| cli.find_subcommand(name.to_string_lossy().as_ref()));
    let known: Vec<String> = subcommand
        .into_iter()
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let flags = flags_from_file(Path::new(&path), &known)?;
    // After the subcommand (args[1]): clap reads flags in order, and the last one wins.
    let insert_at = 2.min(args.len()).min(position);
    let mut out = args[..insert_at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&args[insert_at..]);
    Ok(out)
}

/// The index of the `--config` flag and its value.
fn find_config(args: &[OsString]) -> Option<(usize, OsString)> {
    for (i, arg) in args.iter().enumerate() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return args.get(i + 1).map(|v| (i, v.clone()));
        }
        if let Some(value) = text.strip_prefix("--config=") {
            return Some((i, value.into()));
        }
    }
    None
}

fn flags_from_file(path: &Path, known: &[String]) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut flags = Vec::new();
    for (key, value) in table {
        if key == "config" {
            bail!("{}: a config file cannot name another", path.display());
        }
        let name = key.replace('_', "-");
        if !known.is_empty() && !known.contains(&name) {
            bail!(
                "{}: unknown setting {key:?} (the settings are the flags of this command, without --: see --help)",
                path.display()
            );
        }
        let flag = format!("--{name}");
        let values = match value {
            toml::Value::Array(items) => items,
            other => vec![other],
        };
        for value in values {
            match value {
                toml::Value::Boolean(true) => flags.push(flag.clone().into()),
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => {
                    flags.push(flag.clone().into());
                    flags.push(s.into());
                }
                toml::Value::Integer(n) => {
                    flags.push(flag.clone().into());
                    flags.push(n.to_string().into());
                }
                toml::Value::Float(n) => {
                    flags.push(flag.clone().into());
                    flags.push(n.to_string().into());
                }
                other => bail!(
                    "{}: {key} = {other} is not a string, number or boolean",
                    path.display()
                ),
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        <crate::Cli as clap::CommandFactory>::command()
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_keys_become_flags_that_the_command_line_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node-id = 2\ninitial_cluster = \"1=127.0.0.1:7001,2=127.0.0.1:7002\"\nsyslog-tcp = \"127.0.0.1:6514\"\ninsecure = false\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let expanded = expand(
            args(&["meniscus", "start", "--config", config, "--node-id", "3"]),
            &cli(),
        )
        .unwrap();
        let text: Vec<String> = expanded
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "meniscus",
                "start",
                "--initial-cluster",
                "1=127.0.0.1:7001,2=127.0.0.1:7002",
                "--node-id",
                "2",
                "--syslog-tcp",
                "127.0.0.1:6514",
                "--config",
                config,
                "--node-id",
                "3",
            ]
        );
        assert_eq!(
            expand(args(&["meniscus", "dev"]), &cli()).unwrap(),
            args(&["meniscus", "dev"])
        );
        std::fs::write(&path, "not toml = = 1").unwrap();
        assert!(expand(args(&["meniscus", "start", "--config", config]), &cli()).is_err());
        assert!(expand(
            args(&["meniscus", "start", "--config", "/nonexistent.toml"]),
            &cli()
        )
        .is_err());
        std::fs::write(&path, "node-id = 2\nsyslog-tcpp = \"127.0.0.1:1\"\n").unwrap();
        let unknown = expand(args(&["meniscus", "start", "--config", config]), &cli())
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("unknown setting \"syslog-tcpp\""),
            "{unknown}"
        );
    }
}
