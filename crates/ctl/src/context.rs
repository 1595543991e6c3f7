//! What every command needs: the global flags turned into a client, a printer, a deadline.

use std::future::Future;
use std::io::Write;

use oxcd_client::{Client, ConnectOptions, TlsOptions};

use crate::cli::GlobalFlags;
use crate::exit::{code, error_text, CmdResult, Exit};
use crate::output::{Printer, Rendered};
use crate::retry_log;

/// The global flags of one run.
pub struct Ctx {
    pub flags: GlobalFlags,
}

impl Ctx {
    /// The printer of `-w`, or etcdctl's refusal of an unknown format (exit 4).
    pub fn printer(&self) -> Result<Printer, Exit> {
        env_conflicts();
        Printer::new(&self.flags.write_out, self.flags.hex)
            .ok_or_else(|| Exit::new(code::BAD_FEATURE, "unsupported output format"))
    }

    /// A client on `--endpoints`.
    pub async fn client(&self) -> Result<Client, Exit> {
        self.client_on(&self.flags.endpoints.clone()).await
    }

    /// A client on the given endpoints, with the TLS and credentials of the flags.
    pub async fn client_on(&self, endpoints: &[String]) -> Result<Client, Exit> {
        let options = self.connect_options()?;
        self.connect(endpoints, options).await
    }

    /// A client on the given endpoints with the given options; a failure to connect is
    /// reported as etcdctl reports it (exit 2).
    pub async fn connect(
        &self,
        endpoints: &[String],
        options: ConnectOptions,
    ) -> Result<Client, Exit> {
        env_conflicts();
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.trim().to_owned()).collect();
        match Client::connect(&endpoints, options).await {
            Ok(client) => Ok(client),
            Err(err) => {
                if let oxcd_client::Error::Status(status) = &err {
                    let text = format!(
                        "rpc error: code = {:?} desc = {}",
                        status.code(),
                        status.message()
                    );
                    retry_log::warn_failed_request(&endpoints[0], &text);
                }
                Err(Exit::new(code::BAD_CONNECTION, error_text(&err)))
            }
        }
    }

    fn connect_options(&self) -> Result<ConnectOptions, Exit> {
        let f = &self.flags;
        for (name, value) in [("cert", &f.cert), ("key", &f.key), ("cacert", &f.cacert)] {
            if value.as_deref() == Some("") {
                return Err(Exit::new(
                    code::BAD_ARGS,
                    format!("empty string is passed to --{name} option"),
                ));
            }
        }
        let mut options = ConnectOptions::new()
            .with_dial_timeout(f.dial_timeout)
            .with_retry_timeout(f.command_timeout)
            .with_keep_alive(f.keepalive_time, f.keepalive_timeout);
        let tls_files = f.cert.is_some() || f.key.is_some() || f.cacert.is_some();
        if tls_files || !f.insecure_transport {
            let tls =
                TlsOptions::from_files(f.cacert.as_deref(), f.cert.as_deref(), f.key.as_deref())
                    .map_err(|e| Exit::new(code::BAD_ARGS, e.to_string()))?
                    .with_skip_verify(f.insecure_skip_tls_verify);
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = self.credentials()? {
            options = options.with_user(user, password);
        }
        Ok(options)
    }

    /// `--user name[:password]` and `--password`, asking for the password when missing.
    fn credentials(&self) -> Result<Option<(String, String)>, Exit> {
        let Some(user) = self.flags.user.clone().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if let Some(password) = self.flags.password.clone().filter(|p| !p.is_empty()) {
            return Ok(Some((user, password)));
        }
        if let Some((name, password)) = user.split_once(':') {
            return Ok(Some((name.to_owned(), password.to_owned())));
        }
        eprint!("Password: ");
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Exit::new(code::ERROR, e.to_string()))?;
        Ok(Some((user, line.trim_end_matches(['\n', '\r']).to_owned())))
    }

    /// Runs a request under `--command-timeout`, mapping failures to `Error: ...` exit 1.
    pub async fn request<T>(
        &self,
        fut: impl Future<Output = oxcd_client::Result<T>>,
    ) -> Result<T, Exit> {
        self.request_with(code::ERROR, fut).await
    }

    /// As [`Ctx::request`], exiting with `exit_code` on failure.
    pub async fn request_with<T>(
        &self,
        exit_code: i32,
        fut: impl Future<Output = oxcd_client::Result<T>>,
    ) -> Result<T, Exit> {
        let endpoint = self.flags.endpoints.first().cloned().unwrap_or_default();
        match tokio::time::timeout(self.flags.command_timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if let oxcd_client::Error::Status(status) = &err {
                    let text = format!(
                        "rpc error: code = {:?} desc = {}",
                        status.code(),
                        status.message()
                    );
                    retry_log::warn_failed_request(&endpoint, &text);
                }
                Err(Exit::request(exit_code, &err))
            }
            Err(_) => {
                retry_log::warn_failed_request(&endpoint, retry_log::UNREACHABLE);
                Err(Exit::new(exit_code, "context deadline exceeded"))
            }
        }
    }
}

/// Global flags that have an `ETCDCTL_*` variable: long name and short letter.
const ENV_FLAGS: [(&str, Option<char>); 18] = [
    ("endpoints", None),
    ("debug", None),
    ("write-out", Some('w')),
    ("hex", None),
    ("dial-timeout", None),
    ("command-timeout", None),
    ("keepalive-time", None),
    ("keepalive-timeout", None),
    ("insecure-transport", None),
    ("insecure-discovery", None),
    ("insecure-skip-tls-verify", None),
    ("cert", None),
    ("key", None),
    ("cacert", None),
    ("user", None),
    ("password", None),
    ("discovery-srv", Some('d')),
    ("discovery-srv-name", None),
];

/// As etcd's `pkg/flags`: a global flag given on the command line while its `ETCDCTL_*`
/// variable is set too is a fatal conflict.
fn env_conflicts() {
    let args: Vec<String> = std::env::args().skip(1).take_while(|a| a != "--").collect();
    for (name, short) in ENV_FLAGS {
        let env = format!("ETCDCTL_{}", name.to_uppercase().replace('-', "_"));
        if std::env::var_os(&env).is_none() {
            continue;
        }
        let long = format!("--{name}");
        let given = args.iter().any(|a| {
            a == &long
                || a.starts_with(&format!("{long}="))
                || short.is_some_and(|c| a.starts_with(&format!("-{c}")) && !a.starts_with("--"))
        });
        if given {
            eprintln!(
                "{} C | pkg/flags: conflicting environment variable {} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                retry_log::capnslog_time(),
                crate::go::quote(env.as_bytes())
            );
            std::process::exit(code::ERROR);
        }
    }
}

/// Writes rendered output to stdout.
pub fn emit(rendered: Rendered) -> CmdResult {
    let bytes = rendered?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&bytes);
    let _ = out.flush();
    Ok(())
}
