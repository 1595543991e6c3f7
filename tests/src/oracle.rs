//! Conformance by comparison: the same etcdctl commands against real etcd and the server under
//! test, with normalised outputs that must be identical.

use crate::binaries::{real_etcd_bin, server_bin};
use crate::ctl::etcdctl_stdin;
use crate::diff::line_diff;
use crate::member::Member;
use crate::normalize::Normalizer;

/// Both members carry this name, so it needs no normalising.
const MEMBER_NAME: &str = "oracle";

/// A fresh real etcd (the reference) and a fresh server under test (the subject), started
/// with the same name and flags. Each [`Oracle::check`] runs one etcdctl command on both.
///
/// Run the same commands in the same order on both from the start: revisions must match, so
/// the two stores must see the same history.
#[derive(Debug)]
pub struct Oracle {
    reference: Member,
    subject: Member,
    reference_norm: Normalizer,
    subject_norm: Normalizer,
}

impl Oracle {
    /// Starts both servers with the default flags.
    pub fn start() -> Oracle {
        Oracle::start_with(&[])
    }

    /// Starts both servers with `args` added to the default flags.
    pub fn start_with(args: &[&str]) -> Oracle {
        let builder = Member::builder()
            .name(MEMBER_NAME)
            .args(args.iter().copied());
        let mut reference = builder.clone().bin(real_etcd_bin()).spawn();
        let mut subject = builder.bin(server_bin()).spawn();
        reference.wait_ready();
        subject.wait_ready();
        let reference_norm = Normalizer::for_member(&reference);
        let subject_norm = Normalizer::for_member(&subject);
        Oracle {
            reference,
            subject,
            reference_norm,
            subject_norm,
        }
    }

    /// Real etcd.
    pub fn reference(&self) -> &Member {
        &self.reference
    }

    /// The server under test.
    pub fn subject(&self) -> &Member {
        &self.subject
    }

    /// Runs `etcdctl ARGS` on both and panics with a diff unless the normalised outputs are
    /// identical; returns the (shared) normalised output.
    #[track_caller]
    pub fn check(&self, args: &[&str]) -> String {
        self.check_stdin(args, "")
    }

    /// As [`Oracle::check`], feeding `stdin` to etcdctl.
    #[track_caller]
    pub fn check_stdin(&self, args: &[&str], stdin: &str) -> String {
        let reference_raw = etcdctl_stdin(&self.reference.endpoint(), args, stdin);
        let subject_raw = etcdctl_stdin(&self.subject.endpoint(), args, stdin);
        let expected = self.reference_norm.normalize(args, &reference_raw);
        let got = self.subject_norm.normalize(args, &subject_raw);
        if expected != got {
            panic!(
                "etcdctl {args:?} differs from real etcd ({}):\n\
                 ---- diff, normalised (- real etcd, + {})\n{}\
                 ---- real etcd, raw\n{reference_raw}\
                 ---- {}, raw\n{subject_raw}",
                describe_stdin(stdin),
                self.subject.bin().display(),
                line_diff(&expected, &got),
                self.subject.bin().display(),
            );
        }
        got
    }

    /// Checks each command in turn.
    #[track_caller]
    pub fn check_all(&self, commands: &[&[&str]]) {
        for args in commands {
            self.check(args);
        }
    }
}

fn describe_stdin(stdin: &str) -> String {
    if stdin.is_empty() {
        "no stdin".to_owned()
    } else {
        format!("stdin {stdin:?}")
    }
}
