//! Conversions between strata's types and the protobuf messages: times, mounts, snapshot
//! infos and kinds, content infos and statuses; listings as streams of batches.

use crate::api::services::content::v1 as content_api;
use crate::api::services::snapshots::v1 as snapshots_api;
use crate::api::types;
use futures::stream::{BoxStream, StreamExt};
use prost_types::Timestamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_content::{Error, Result};
use strata_snapshot::{Kind, Mount};

/// `t` as a protobuf timestamp (times before 1970 included).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let ts = strata_grpc::convert::timestamp(UNIX_EPOCH + Duration::new(5, 7));
/// assert_eq!((ts.seconds, ts.nanos), (5, 7));
/// assert_eq!(strata_grpc::convert::system_time(Some(&ts)), UNIX_EPOCH + Duration::new(5, 7));
/// ```
pub fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        },
        Err(e) => {
            let mut ts = Timestamp {
                seconds: -(e.duration().as_secs() as i64),
                nanos: -(e.duration().subsec_nanos() as i32),
            };
            ts.normalize();
            ts
        }
    }
}

/// A protobuf timestamp as a `SystemTime`; a missing one is the epoch.
pub fn system_time(ts: Option<&Timestamp>) -> SystemTime {
    let Some(ts) = ts else { return UNIX_EPOCH };
    let (secs, nanos) = (ts.seconds, ts.nanos.clamp(0, 999_999_999) as u32);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// A non-negative protobuf `int64` as `u64`.
///
/// # Errors
/// `InvalidArgument` naming `what` when `v` is negative.
pub fn non_negative(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::invalid_argument(format!("{what} {v} is negative")))
}

/// A size as a protobuf `int64` (saturating; no blob is 8 EiB).
pub fn int64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// strata's mounts as `containerd.types.Mount`s.
pub fn mounts(ms: Vec<Mount>) -> Vec<types::Mount> {
    ms.into_iter()
        .map(|m| types::Mount {
            r#type: m.kind,
            source: m.source,
            target: m.target,
            options: m.options,
        })
        .collect()
}

/// A snapshot kind as the protobuf enum value.
pub fn kind(k: Kind) -> snapshots_api::Kind {
    match k {
        Kind::View => snapshots_api::Kind::View,
        Kind::Active => snapshots_api::Kind::Active,
        Kind::Committed => snapshots_api::Kind::Committed,
    }
}

/// A snapshot info as its protobuf message.
pub fn snapshot_info(i: strata_snapshot::Info) -> snapshots_api::Info {
    snapshots_api::Info {
        name: i.name,
        parent: i.parent,
        kind: kind(i.kind) as i32,
        created_at: Some(timestamp(i.created)),
        updated_at: Some(timestamp(i.updated)),
        labels: i.labels,
    }
}

/// A blob's info as its protobuf message.
pub fn content_info(i: strata_content::Info) -> content_api::Info {
    content_api::Info {
        digest: i.digest.to_string(),
        size: int64(i.size),
        created_at: Some(timestamp(i.created_at)),
        updated_at: Some(timestamp(i.updated_at)),
        labels: i.labels,
    }
}

/// An ingest's status as its protobuf message.
pub fn content_status(s: strata_content::Status) -> content_api::Status {
    content_api::Status {
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
        r#ref: s.reference,
        offset: int64(s.offset),
        total: int64(s.total),
        expected: s.expected.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// How many items one message of a listing stream carries.
pub const LIST_BATCH: usize = 100;

/// A listing as a stream of messages of at most [`LIST_BATCH`] items each, `wrap` making
/// one message of a batch.
pub fn batched<T: Clone, M: Send + 'static>(
    items: Vec<T>,
    wrap: impl Fn(Vec<T>) -> M,
) -> BoxStream<'static, Result<M, tonic::Status>> {
    let msgs: Vec<_> = items
        .chunks(LIST_BATCH)
        .map(|c| Ok(wrap(c.to_vec())))
        .collect();
    futures::stream::iter(msgs).boxed()
}

/// The field paths of an update mask (none: replace everything updatable).
pub fn field_paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_epoch_round_trip() {
        let t = UNIX_EPOCH - Duration::new(3, 250);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (-4, 999_999_750));
        assert_eq!(system_time(Some(&ts)), t);
        assert_eq!(system_time(None), UNIX_EPOCH);
    }

    #[tokio::test]
    async fn listings_come_in_batches() {
        let msgs: Vec<_> = batched((0..250).collect(), |v: Vec<i32>| v.len())
            .collect()
            .await;
        let sizes: Vec<_> = msgs.into_iter().map(Result::unwrap).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn negative_sizes_are_invalid() {
        assert!(
            non_negative(-1, "offset")
                .unwrap_err()
                .is_invalid_argument()
        );
        assert_eq!(non_negative(7, "offset").unwrap(), 7);
        assert_eq!(int64(u64::MAX), i64::MAX);
    }
}
