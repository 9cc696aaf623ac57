//! When to try a request again, and how many may run at once: jittered exponential
//! backoff, a registry's `Retry-After`, and the per-host request limit shared by every
//! client in the process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::sync::Semaphore;

/// The longest `Retry-After` honoured; a registry asking for more is retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The delay before retry number `attempt` (0-based): `base · 2^attempt`, scaled by a
/// random factor in [0.5, 1.5) so that many clients do not retry in step.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    exp.mul_f64(0.5 + rand::random::<f64>())
}

/// The delay a `429`/`503` response asks for in its `Retry-After` header (seconds or an
/// HTTP date, relative to `now`), at most [`MAX_RETRY_AFTER`]; `None` without a valid
/// header.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// The request limit of `host` (`host[:port]`), created with `permits` on first use and
/// shared by every client in this process from then on.
pub(crate) fn host_limit(host: &str, permits: usize) -> Arc<Semaphore> {
    static LIMITS: LazyLock<Mutex<HashMap<String, Arc<Semaphore>>>> =
        LazyLock::new(Default::default);
    let mut limits = LIMITS.lock().unwrap_or_else(|p| p.into_inner());
    limits
        .entry(host.to_string())
        .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1))))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_with_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 0..5 {
            let d = backoff(base, attempt);
            let exp = base * 2u32.pow(attempt);
            assert!(d >= exp / 2 && d < exp * 3 / 2, "attempt {attempt}: {d:?}");
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| backoff(base, 3)).collect();
        assert!(spread.len() > 1, "jittered");
        assert!(backoff(base, u32::MAX) > Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_dates_and_cap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(retry_after(&h("2"), now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&h("3600"), now), Some(MAX_RETRY_AFTER));
        let in_5s = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(retry_after(&h(&in_5s), now), Some(Duration::from_secs(5)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(retry_after(&h(&past), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&h("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[tokio::test]
    async fn host_limits_are_shared_per_host() {
        let a = host_limit("limit-test-a:1", 2);
        let again = host_limit("limit-test-a:1", 99);
        assert!(Arc::ptr_eq(&a, &again), "the first creation wins");
        let _p1 = a.clone().acquire_owned().await.unwrap();
        let _p2 = again.clone().acquire_owned().await.unwrap();
        assert!(a.clone().try_acquire_owned().is_err(), "two permits for a");
        assert!(host_limit("limit-test-b:1", 2).try_acquire_owned().is_ok());
    }
}
