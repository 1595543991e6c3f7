//! etcd's v3 RPC errors as data: each error's exact text and gRPC status code.
//!
//! etcd clients branch on the status message (etcd's `clientv3` maps the text back to a
//! typed error, and tools print it), so the texts here are the API and must match etcd
//! 3.5 byte for byte. Each error is declared once, as one row of the `etcd_errors!` table
//! below; [`EtcdError::code`], [`EtcdError::message`], [`EtcdError::from_message`] and
//! `Display` are all generated from that row.
//!
//! This module only describes errors. Turning one into a `tonic::Status` (or an HTTP
//! error body) is the server's job, in one place.
//!
//! ```
//! use oxcd_api::EtcdError;
//!
//! let err = EtcdError::Compacted;
//! assert_eq!(err.code(), tonic::Code::OutOfRange);
//! assert_eq!(err.to_string(), "etcdserver: mvcc: required revision has been compacted");
//! assert_eq!(EtcdError::from_message(err.message()), Some(err));
//! ```

use tonic::Code;

/// Declares [`EtcdError`] from one table of `Variant => (code, "text")` rows.
macro_rules! etcd_errors {
    ($( $(#[doc = $doc:literal])* $variant:ident => ($code:ident, $text:literal), )+) => {
        /// An etcd v3 RPC error: what the server answers and what a client can recognize.
        ///
        /// The `Display` text is the gRPC status message etcd sends.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum EtcdError {
            $(
                $(#[doc = $doc])*
                #[error($text)]
                $variant,
            )+
        }

        impl EtcdError {
            /// Every error, in declaration order.
            pub const ALL: &'static [EtcdError] = &[$(EtcdError::$variant,)+];

            /// The gRPC status code etcd answers this error with.
            pub const fn code(&self) -> Code {
                match self {
                    $(EtcdError::$variant => Code::$code,)+
                }
            }

            /// etcd's exact status message for this error.
            pub const fn message(&self) -> &'static str {
                match self {
                    $(EtcdError::$variant => $text,)+
                }
            }

            /// The error whose status message is exactly `message`, if any (client side:
            /// recognizing a server's answer).
            pub fn from_message(message: &str) -> Option<EtcdError> {
                match message {
                    $($text => Some(EtcdError::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

etcd_errors! {
    // Request validation and MVCC.

    /// A request needs a key and has none.
    EmptyKey => (InvalidArgument, "etcdserver: key is not provided"),
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    KeyNotFound => (InvalidArgument, "etcdserver: key not found"),
    /// A value was given together with `ignore_value`.
    ValueProvided => (InvalidArgument, "etcdserver: value is provided"),
    /// A lease was given together with `ignore_lease`.
    LeaseProvided => (InvalidArgument, "etcdserver: lease is provided"),
    /// A txn has more operations in a branch (or compares) than `--max-txn-ops`.
    TooManyOps => (InvalidArgument, "etcdserver: too many operations in txn request"),
    /// A txn branch writes the same key twice.
    DuplicateKey => (InvalidArgument, "etcdserver: duplicate key given in txn request"),
    /// The requested revision is below the compaction revision.
    Compacted => (OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
    /// The requested revision is above the current revision.
    FutureRev => (OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
    /// The backend is past its quota (NOSPACE alarm); writes are refused.
    NoSpace => (ResourceExhausted, "etcdserver: mvcc: database space exceeded"),

    // Leases.

    /// No lease with this id.
    LeaseNotFound => (NotFound, "etcdserver: requested lease not found"),
    /// LeaseGrant with an id already in use.
    LeaseExist => (FailedPrecondition, "etcdserver: lease already exists"),
    /// LeaseGrant with a TTL above the maximum.
    LeaseTtlTooLarge => (OutOfRange, "etcdserver: too large lease TTL"),

    // Watch.

    /// The watch stream was closed by the server.
    WatchCanceled => (Cancelled, "etcdserver: watch canceled"),

    // Membership.

    /// MemberAdd with an id already in the cluster.
    MemberExist => (FailedPrecondition, "etcdserver: member ID already exist"),
    /// MemberAdd or MemberUpdate with a peer URL another member has.
    PeerUrlExist => (FailedPrecondition, "etcdserver: Peer URLs already exists"),
    /// The change would leave too few started members for a quorum (strict reconfig check).
    MemberNotEnoughStarted => (FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members"),
    /// Peer URLs that do not parse.
    MemberBadUrls => (InvalidArgument, "etcdserver: given member URLs are invalid"),
    /// No member with this id.
    MemberNotFound => (NotFound, "etcdserver: member not found"),
    /// MemberPromote of a voting member.
    MemberNotLearner => (FailedPrecondition, "etcdserver: can only promote a learner member"),
    /// MemberPromote of a learner that lags the leader.
    LearnerNotReady => (FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"),
    /// MemberAdd of a learner when the cluster already has the maximum.
    TooManyLearners => (FailedPrecondition, "etcdserver: too many learner members in cluster"),

    // Load.

    /// The request is larger than `--max-request-bytes`.
    RequestTooLarge => (InvalidArgument, "etcdserver: request is too large"),
    /// Applied index lags committed index too far; new proposals are refused.
    TooManyRequests => (ResourceExhausted, "etcdserver: too many requests"),

    // Auth.

    /// AuthEnable without a `root` user.
    RootUserNotExist => (FailedPrecondition, "etcdserver: root user does not exist"),
    /// AuthEnable while `root` lacks the `root` role.
    RootRoleNotExist => (FailedPrecondition, "etcdserver: root user does not have root role"),
    /// UserAdd of an existing user.
    UserAlreadyExist => (FailedPrecondition, "etcdserver: user name already exists"),
    /// A user name is required and empty (also: a request without a token when auth is on).
    UserEmpty => (InvalidArgument, "etcdserver: user name is empty"),
    /// No user with this name.
    UserNotFound => (FailedPrecondition, "etcdserver: user name not found"),
    /// RoleAdd of an existing role.
    RoleAlreadyExist => (FailedPrecondition, "etcdserver: role name already exists"),
    /// No role with this name.
    RoleNotFound => (FailedPrecondition, "etcdserver: role name not found"),
    /// A role name is required and empty.
    RoleEmpty => (InvalidArgument, "etcdserver: role name is empty"),
    /// Authenticate with an unknown user or a wrong password.
    AuthFailed => (InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
    /// The user's roles do not allow this request.
    PermissionDenied => (PermissionDenied, "etcdserver: permission denied"),
    /// UserRevokeRole of a role the user does not have.
    RoleNotGranted => (FailedPrecondition, "etcdserver: role is not granted to the user"),
    /// RoleRevokePermission of a permission the role does not have.
    PermissionNotGranted => (FailedPrecondition, "etcdserver: permission is not granted to the role"),
    /// An auth request that needs auth to be enabled.
    AuthNotEnabled => (FailedPrecondition, "etcdserver: authentication is not enabled"),
    /// The token is unknown or expired.
    InvalidAuthToken => (Unauthenticated, "etcdserver: invalid auth token"),
    /// A change that would break auth (revoking `root` from the root user while enabled).
    InvalidAuthMgmt => (InvalidArgument, "etcdserver: invalid auth management"),
    /// The auth store changed between the permission check and apply.
    AuthOldRevision => (InvalidArgument, "etcdserver: revision of auth store is old"),

    // Cluster state.

    /// The member knows no leader.
    NoLeader => (Unavailable, "etcdserver: no leader"),
    /// The request must be served by the leader and this member is not.
    NotLeader => (FailedPrecondition, "etcdserver: not leader"),
    /// Leadership changed while the request was in flight.
    LeaderChanged => (Unavailable, "etcdserver: leader changed"),
    /// The cluster version does not support this request yet.
    NotCapable => (Unavailable, "etcdserver: not capable"),
    /// The server is shutting down.
    Stopped => (Unavailable, "etcdserver: server stopped"),
    /// The proposal was not applied before its deadline.
    Timeout => (Unavailable, "etcdserver: request timed out"),
    /// Timed out, probably because the previous leader failed.
    TimeoutDueToLeaderFail => (Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"),
    /// Timed out, probably because a connection was lost.
    TimeoutDueToConnectionLost => (Unavailable, "etcdserver: request timed out, possibly due to connection lost"),
    /// Timed out waiting for the applied index to catch up with a read index.
    TimeoutWaitAppliedIndex => (Unavailable, "etcdserver: request timed out, waiting for the applied index took too long"),
    /// The change would leave the cluster without an active quorum.
    Unhealthy => (Unavailable, "etcdserver: unhealthy cluster"),
    /// A CORRUPT alarm is active.
    Corrupt => (DataLoss, "etcdserver: corrupt cluster"),
    /// A learner cannot serve this request.
    NotSupportedForLearner => (Unavailable, "etcdserver: rpc not supported for learner"),
    /// MoveLeader to a member that cannot lead (unknown, a learner, or not caught up).
    BadLeaderTransferee => (FailedPrecondition, "etcdserver: bad leader transferee"),

    // Downgrade (3.5).

    /// The cluster version is not known yet.
    ClusterVersionUnavailable => (Unavailable, "etcdserver: cluster version not found during downgrade"),
    /// The target version is not `major.minor`.
    WrongDowngradeVersionFormat => (InvalidArgument, "etcdserver: wrong downgrade target version format"),
    /// The target version is not one minor version below the cluster version.
    InvalidDowngradeTargetVersion => (InvalidArgument, "etcdserver: invalid downgrade target version"),
    /// A downgrade is already in progress.
    DowngradeInProcess => (FailedPrecondition, "etcdserver: cluster has a downgrade job in progress"),
    /// Cancel without a downgrade in progress.
    NoInflightDowngrade => (FailedPrecondition, "etcdserver: no inflight downgrade job"),

    // Request lifetime (3.5).

    /// The client canceled the request.
    Canceled => (Cancelled, "etcdserver: request canceled"),
    /// The request's deadline passed.
    DeadlineExceeded => (DeadlineExceeded, "etcdserver: context deadline exceeded"),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn texts_and_codes_match_etcd() {
        let cases = [
            (
                EtcdError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                EtcdError::FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                EtcdError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                EtcdError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                EtcdError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                EtcdError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                EtcdError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                EtcdError::LeaseExist,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                EtcdError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                EtcdError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                EtcdError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                EtcdError::Timeout,
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                EtcdError::PeerUrlExist,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                EtcdError::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                EtcdError::InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                EtcdError::PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                EtcdError::Corrupt,
                Code::DataLoss,
                "etcdserver: corrupt cluster",
            ),
        ];
        for (err, code, text) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.message(), text);
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn every_text_is_unique_and_round_trips() {
        let mut seen = HashSet::new();
        for &err in EtcdError::ALL {
            assert!(
                seen.insert(err.message()),
                "duplicate text {:?}",
                err.message()
            );
            assert!(err.message().starts_with("etcdserver: "), "{err:?}");
            assert_eq!(EtcdError::from_message(err.message()), Some(err));
        }
        assert_eq!(EtcdError::ALL.len(), 59);
    }

    #[test]
    fn unknown_text_is_not_an_etcd_error() {
        assert_eq!(EtcdError::from_message(""), None);
        assert_eq!(EtcdError::from_message("etcdserver: no leader "), None);
        assert_eq!(EtcdError::from_message("ETCDSERVER: NO LEADER"), None);
        assert_eq!(EtcdError::from_message("context deadline exceeded"), None);
    }
}
