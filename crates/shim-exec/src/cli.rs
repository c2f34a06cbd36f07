//! The shim v2 binary contract's command line, parsed the way Go's `flag` package does it:
//! single- or double-dash flags, `-flag value` or `-flag=value`, boolean flags without a value,
//! parsing stops at the first non-flag word (the action) or after `--`.
//!
//! Flags as containerd passes them to `containerd-shim-runc-v2` (containerd
//! `pkg/shim/shim.go` `parseFlags`, `runtime/v2/shim/util.go` `Command`).

use std::path::PathBuf;

/// What the invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start (or find) the long-lived shim for the id and print its address.
    Start,
    /// Clean up after a dead shim and print a `DeleteResponse`.
    Delete,
    /// No action word: the re-executed daemon that serves on the listener at fd 3.
    Serve,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub namespace: String,
    /// containerd's own ttrpc address (where events would be published).
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: Option<PathBuf>,
    pub debug: bool,
    pub action: Action,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid boolean value {value:?} for -{flag}")]
    BadBool { flag: String, value: String },
    #[error("unknown action {0:?} (want start or delete)")]
    UnknownAction(String),
    #[error("-{0} is required")]
    Required(&'static str),
}

impl ShimArgs {
    /// Parses the arguments after the program name.
    pub fn parse<I, S>(args: I) -> Result<ShimArgs, CliError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut namespace = None;
        let mut address = String::new();
        let mut publish_binary = String::new();
        let mut id = None;
        let mut bundle = None;
        let mut debug = false;
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg == "--" {
                i += 1;
                break;
            }
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                break;
            };
            if flag.is_empty() {
                break;
            }
            i += 1;
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "debug" {
                debug = match inline.as_deref() {
                    None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") => true,
                    Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") => false,
                    Some(v) => {
                        return Err(CliError::BadBool {
                            flag: name.to_string(),
                            value: v.to_string(),
                        })
                    }
                };
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| CliError::MissingValue(name.to_string()))?;
                    i += 1;
                    v.clone()
                }
            };
            match name {
                "namespace" => namespace = Some(value),
                "address" => address = value,
                "publish-binary" => publish_binary = value,
                "id" => id = Some(value),
                "bundle" => bundle = Some(PathBuf::from(value)),
                // Accepted and ignored, as newer containerd versions pass them.
                "socket" | "runtime-id" => {}
                other => return Err(CliError::UnknownFlag(other.to_string())),
            }
        }
        let action = match args.get(i).map(String::as_str) {
            None => Action::Serve,
            Some("start") => Action::Start,
            Some("delete") => Action::Delete,
            Some(other) => return Err(CliError::UnknownAction(other.to_string())),
        };
        Ok(ShimArgs {
            namespace: namespace
                .filter(|n| !n.is_empty())
                .ok_or(CliError::Required("namespace"))?,
            address,
            publish_binary,
            id: id
                .filter(|n| !n.is_empty())
                .ok_or(CliError::Required("id"))?,
            bundle,
            debug,
            action,
        })
    }

    /// The arguments that re-execute this shim as the serving daemon (no action word).
    pub fn serve_args(&self) -> Vec<String> {
        let mut out = vec![
            "-namespace".to_string(),
            self.namespace.clone(),
            "-id".to_string(),
            self.id.clone(),
            "-address".to_string(),
            self.address.clone(),
            "-publish-binary".to_string(),
            self.publish_binary.clone(),
        ];
        if let Some(b) = &self.bundle {
            out.push("-bundle".to_string());
            out.push(b.display().to_string());
        }
        if self.debug {
            out.push("-debug".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_style_start() {
        let a = ShimArgs::parse([
            "-namespace",
            "k8s.io",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "abc",
            "-debug",
            "start",
        ])
        .expect("parse");
        assert_eq!(a.namespace, "k8s.io");
        assert_eq!(a.id, "abc");
        assert!(a.debug);
        assert_eq!(a.action, Action::Start);
    }

    #[test]
    fn equals_form_double_dash_and_delete() {
        let a = ShimArgs::parse([
            "--namespace=ns",
            "-id=x",
            "-bundle",
            "/b",
            "-debug=false",
            "delete",
        ])
        .expect("parse");
        assert_eq!(a.bundle, Some(PathBuf::from("/b")));
        assert!(!a.debug);
        assert_eq!(a.action, Action::Delete);
    }

    #[test]
    fn serve_round_trip() {
        let a =
            ShimArgs::parse(["-namespace", "ns", "-id", "x", "-debug", "start"]).expect("parse");
        let b = ShimArgs::parse(a.serve_args()).expect("parse");
        assert_eq!(b.action, Action::Serve);
        assert_eq!((b.namespace, b.id, b.debug), (a.namespace, a.id, true));
    }

    #[test]
    fn errors() {
        assert_eq!(
            ShimArgs::parse(["-nope", "1"]),
            Err(CliError::UnknownFlag("nope".into()))
        );
        assert_eq!(
            ShimArgs::parse(["-namespace"]),
            Err(CliError::MissingValue("namespace".into()))
        );
        assert_eq!(
            ShimArgs::parse(["-id", "x", "start"]),
            Err(CliError::Required("namespace"))
        );
        assert_eq!(
            ShimArgs::parse(["-namespace", "n", "-id", "x", "run"]),
            Err(CliError::UnknownAction("run".into()))
        );
    }
}
