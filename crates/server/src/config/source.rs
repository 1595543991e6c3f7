//! Where flag values come from, in etcd's order: the command line, then `ETCD_*`
//! environment variables for flags not on the command line — unless a config file is
//! named (by `--config-file` or `ETCD_CONFIG_FILE`), in which case the file alone is
//! used and every other flag and variable is ignored.
//!
//! Environment rules, as etcd applies them: an empty variable counts as unset; a
//! variable whose flag is also on the command line is an error; an `ETCD_*` variable
//! that names no flag is reported in a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::FromArgMatches;

use super::flags::Flags;
use super::ConfigError;

/// Flags gathered from one invocation, before validation.
pub(crate) struct Gathered {
    pub flags: Flags,
    /// Long names of the flags the user set (command line, environment or file).
    pub set_by_user: BTreeSet<String>,
    /// Long names set on the command line or through the environment (not the file).
    pub explicit: BTreeSet<String>,
    pub config_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

pub(crate) enum Outcome {
    Help(String),
    Version,
    Flags(Box<Gathered>),
}

/// The environment variable etcd reads for a flag.
pub fn env_name(long: &str) -> String {
    format!("ETCD_{}", long.to_ascii_uppercase().replace('-', "_"))
}

fn long_names(cmd: &clap::Command) -> Vec<(String, String)> {
    cmd.get_arguments()
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_string())))
        .filter(|(_, long)| long != "help")
        .collect()
}

/// Go's flag package also takes `-name`; clap wants `--name`. Rewrite a single-dash
/// argument only when it names one of our flags, so values such as "-1" pass through.
fn normalize_dashes(args: Vec<OsString>, longs: &BTreeSet<String>) -> Vec<OsString> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let Some(s) = a.to_str() else { return a };
            if i == 0 || s.starts_with("--") || !s.starts_with('-') || s.len() < 3 {
                return a;
            }
            let name = s[1..].split('=').next().unwrap_or("");
            if longs.contains(name) || name == "help" {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

fn clap_error(err: clap::Error, source_name: Option<&str>) -> ConfigError {
    match err.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let flag = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => {
                    s.split([' ', '=']).next().unwrap_or(s).to_string()
                }
                _ => String::new(),
            };
            let value = match err.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let reason = std::error::Error::source(&err)
                .map(|e| e.to_string())
                .unwrap_or_else(|| "parse error".to_string());
            ConfigError::InvalidValue {
                name: source_name.map_or_else(|| format!("flag {flag}"), str::to_string),
                value,
                reason,
                from_command_line: source_name.is_none(),
            }
        }
        _ => ConfigError::Usage(err.render().to_string().trim_end().to_string()),
    }
}

pub(crate) fn gather(
    args: Vec<OsString>,
    env: &BTreeMap<String, String>,
) -> Result<Outcome, ConfigError> {
    let mut cmd = Flags::command_without_env();
    let ids_longs = long_names(&cmd);
    let longs: BTreeSet<String> = ids_longs.iter().map(|(_, l)| l.clone()).collect();
    let mut args = normalize_dashes(args, &longs);
    if args.is_empty() {
        args.push("oxcd".into());
    }

    let matches = match cmd.try_get_matches_from_mut(&args) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => {
            // Help comes from the command with env names, values hidden.
            let mut full =
                <Flags as clap::CommandFactory>::command().mut_args(|a| a.hide_env_values(true));
            return Ok(Outcome::Help(full.render_help().to_string()));
        }
        Err(e) => return Err(clap_error(e, None)),
    };
    let on_command_line: BTreeSet<String> = ids_longs
        .iter()
        .filter(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|(_, long)| long.clone())
        .collect();
    if matches.get_one::<bool>("version").copied().unwrap_or(false) {
        return Ok(Outcome::Version);
    }

    let mut config_file = matches
        .get_one::<String>("config_file")
        .cloned()
        .unwrap_or_default();
    if config_file.is_empty() {
        config_file = env.get("ETCD_CONFIG_FILE").cloned().unwrap_or_default();
    }
    if !config_file.is_empty() {
        let path = PathBuf::from(&config_file);
        let (flags, set_by_user, warnings) = super::file::load(&path, &cmd)?;
        return Ok(Outcome::Flags(Box::new(Gathered {
            flags,
            set_by_user,
            explicit: BTreeSet::new(),
            config_file: Some(path),
            warnings,
        })));
    }

    let by_env: BTreeMap<String, &String> = longs.iter().map(|l| (env_name(l), l)).collect();
    let mut warnings = Vec::new();
    let mut extra: Vec<OsString> = Vec::new();
    let mut explicit = on_command_line.clone();
    for (key, value) in env {
        match by_env.get(key) {
            Some(long) if on_command_line.contains(*long) => {
                return Err(ConfigError::ConflictingEnv(key.clone()));
            }
            Some(long) => {
                if value.is_empty() || long.as_str() == "config-file" || long.as_str() == "version"
                {
                    continue;
                }
                let arg = OsString::from(format!("--{long}={value}"));
                // Parse it alone first so that a bad value names the variable, not the flag.
                Flags::command_without_env()
                    .try_get_matches_from(["oxcd".into(), arg.clone()])
                    .map_err(|e| clap_error(e, Some(key)))?;
                extra.push(arg);
                explicit.insert((*long).clone());
            }
            None if key.starts_with("ETCD_") => {
                warnings.push(format!("unrecognized environment variable {key}={value}"));
            }
            None => {}
        }
    }

    let flags = if extra.is_empty() {
        Flags::from_arg_matches(&matches).map_err(|e| clap_error(e, None))?
    } else {
        args.extend(extra);
        let m = Flags::command_without_env()
            .try_get_matches_from(&args)
            .map_err(|e| clap_error(e, None))?;
        Flags::from_arg_matches(&m).map_err(|e| clap_error(e, None))?
    };
    Ok(Outcome::Flags(Box::new(Gathered {
        flags,
        set_by_user: explicit.clone(),
        explicit,
        config_file: None,
        warnings,
    })))
}
