//! The `--config-file` YAML, read as etcd reads it: top-level keys are flag names
//! (`name`, `data-dir`, `listen-client-urls`, ...), URL lists are comma-separated
//! strings, durations are nanoseconds (or Go duration text), and TLS settings sit in
//! two blocks, `client-transport-security` and `peer-transport-security`. Keys that
//! name no flag are ignored, with a warning.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::flags::Flags;
use super::ConfigError;

/// Keys of a transport-security block and the flag each one sets, client then peer.
const CLIENT_SECURITY: &[(&str, &str)] = &[
    ("cert-file", "cert-file"),
    ("key-file", "key-file"),
    ("client-cert-file", "client-cert-file"),
    ("client-key-file", "client-key-file"),
    ("client-cert-auth", "client-cert-auth"),
    ("trusted-ca-file", "trusted-ca-file"),
    ("auto-tls", "auto-tls"),
    ("crl-file", "client-crl-file"),
    ("allowed-hostname", "client-cert-allowed-hostname"),
];
const PEER_SECURITY: &[(&str, &str)] = &[
    ("cert-file", "peer-cert-file"),
    ("key-file", "peer-key-file"),
    ("client-cert-file", "peer-client-cert-file"),
    ("client-key-file", "peer-client-key-file"),
    ("client-cert-auth", "peer-client-cert-auth"),
    ("trusted-ca-file", "peer-trusted-ca-file"),
    ("auto-tls", "peer-auto-tls"),
    ("crl-file", "peer-crl-file"),
    ("allowed-cn", "peer-cert-allowed-cn"),
    ("allowed-hostname", "peer-cert-allowed-hostname"),
];

pub(crate) type Loaded = (Flags, BTreeSet<String>, Vec<String>);

pub(crate) fn load(path: &Path, cmd: &clap::Command) -> Result<Loaded, ConfigError> {
    let err = |reason: String| ConfigError::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    from_yaml(&text, cmd).map_err(err)
}

pub(crate) fn from_yaml(text: &str, cmd: &clap::Command) -> Result<Loaded, String> {
    let mut top = match serde_yaml::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => return Err("the top level must be a mapping of flag names to values".to_string()),
    };
    for (block, keys) in [
        ("client-transport-security", CLIENT_SECURITY),
        ("peer-transport-security", PEER_SECURITY),
    ] {
        match top.remove(block) {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Some(k) = k.as_str() else { continue };
                    if let Some((_, flag)) = keys.iter().find(|(key, _)| *key == k) {
                        top.insert(Value::from(*flag), v);
                    }
                }
            }
            Some(_) => return Err(format!("{block} must be a mapping")),
        }
    }
    // A key with no value (`data-dir:`) leaves its flag at the default, as in etcd's sample
    // config file, where most keys are written that way.
    top.retain(|_, v| !v.is_null());

    let mut known: BTreeSet<String> = BTreeSet::new();
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            known.insert(long.to_string());
            known.extend(
                arg.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
    }
    let mut set = BTreeSet::new();
    let mut warnings = Vec::new();
    for k in top.keys() {
        let Some(k) = k.as_str() else { continue };
        if known.contains(k) {
            let canonical = cmd
                .get_arguments()
                .find(|a| {
                    a.get_long() == Some(k) || a.get_all_aliases().is_some_and(|al| al.contains(&k))
                })
                .and_then(|a| a.get_long())
                .unwrap_or(k);
            set.insert(canonical.to_string());
        } else {
            warnings.push(format!("unknown key {k:?} in config file, ignored"));
        }
    }
    let flags: Flags = serde_yaml::from_value(Value::Mapping(top.clone())).map_err(|e| {
        // from_value loses the key; find the one that fails alone and name it.
        let bad_key = top.iter().find_map(|(k, v)| {
            let one: Mapping = [(k.clone(), v.clone())].into_iter().collect();
            serde_yaml::from_value::<Flags>(Value::Mapping(one))
                .is_err()
                .then(|| k.as_str().unwrap_or("?").to_string())
        });
        match bad_key {
            Some(k) => format!("{k}: {e}"),
            None => e.to_string(),
        }
    })?;
    Ok((flags, set, warnings))
}
