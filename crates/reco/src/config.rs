//! `reco serve --config FILE` (or `RECO_CONFIG`): a TOML file of `serve`'s settings, one key
//! per flag, named like the flag without its dashes (`follow-ms = 100` or `follow_ms = 100`).
//! Layers, lowest first: built-in defaults, the file, `RECO_*` environment variables, flags.
//! The file's values become the flags' defaults, so clap validates them with the flags' own
//! parsers; a key that names no flag, a section or a value of no flag's shape is refused at
//! start, naming the key and the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Command;

/// `command` with the `serve` defaults the config file sets, when `args` (the whole command
/// line) runs `serve` with `--config`, or `RECO_CONFIG` names a file.
pub fn apply(command: Command, args: &[OsString]) -> anyhow::Result<Command> {
    if args.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(command);
    }
    let Some(path) = config_path(&args[2..]) else { return Ok(command) };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read the config file {}", path.display()))?;
    let defaults = parse(&text, &path)?;
    let mut serve = command.find_subcommand("serve").context("reco has a serve command")?.clone();
    let known: Vec<String> =
        serve.get_arguments().filter_map(|a| a.get_long()).filter(|l| *l != "config").map(str::to_owned).collect();
    for (key, values) in defaults {
        let long = key.replace('_', "-");
        if !known.contains(&long) {
            bail!("{}: unknown key `{key}` (known: {})", path.display(), known.join(", "));
        }
        let id = serve.get_arguments().find(|a| a.get_long() == Some(long.as_str())).map(|a| a.get_id().clone());
        let id = id.context("a known key has an argument")?;
        serve = serve.mut_arg(id, |arg| arg.default_values(values));
    }
    Ok(command.mut_subcommand("serve", |_| serve))
}

/// `--config PATH` or `--config=PATH` among `serve`'s arguments, else `RECO_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("RECO_CONFIG").filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// The file's keys with their values as flag text (a list for a list flag), in file order.
fn parse(text: &str, path: &Path) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let table: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let shown = |v: &toml::Value| match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => bail!("{}: key `{key}` has a {}, not a flag's value", path.display(), other.type_str()),
            };
            let values = match &value {
                toml::Value::Array(items) => items.iter().map(shown).collect::<anyhow::Result<Vec<_>>>()?,
                toml::Value::Table(_) => bail!("{}: `{key}` is a section; the file has keys only", path.display()),
                single => vec![shown(single)?],
            };
            Ok((key, values))
        })
        .collect()
}
