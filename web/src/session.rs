//! In-memory sessions and login throttling.
//!
//! Sessions live only in memory: a restart logs everyone out, which is the
//! safe default for an appliance and keeps tokens off the disk.

use crate::access::Role;
use crate::util::{ct_eq, now_ms, random_token};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle timeout: a shift's worth of inactivity.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Absolute lifetime: log in at least once a day.
pub const SESSION_ABSOLUTE: Duration = Duration::from_secs(24 * 3600);

/// Sessions beyond this are refused by evicting the oldest, so a login
/// flood cannot grow memory without bound.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub user: String,
    pub role: Role,
    /// Wall clock (ms since the epoch) of the absolute expiry.
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("role", &self.role)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Constant-time comparison with a presented CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        ct_eq(self.csrf.as_bytes(), presented.as_bytes())
    }
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

/// Keyed by the SHA-256 of the token: the map lookup's timing can then only
/// reveal something about a hash, never about a valid token.
type Key = [u8; 32];

fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    inner: Mutex<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(SESSION_IDLE, SESSION_ABSOLUTE)
    }
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration) -> Sessions {
        Sessions {
            idle,
            absolute,
            inner: Mutex::new(HashMap::new()),
        }
    }

    pub fn absolute(&self) -> Duration {
        self.absolute
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // The map holds no invariant a panicking holder could break halfway,
        // so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) >= self.idle
            || now.saturating_duration_since(e.created) >= self.absolute
    }

    pub fn create(&self, user: &str, role: Role, now: Instant) -> Session {
        let absolute_ms = i64::try_from(self.absolute.as_millis()).unwrap_or(i64::MAX);
        let session = Session {
            token: random_token(),
            csrf: random_token(),
            user: user.to_owned(),
            role,
            expires_at_ms: now_ms().saturating_add(absolute_ms),
        };
        let mut map = self.map();
        map.retain(|_, e| !self.expired(e, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            key(&session.token),
            Entry {
                session: session.clone(),
                created: now,
                last_seen: now,
            },
        );
        session
    }

    /// The live session for `token`, marking it used now.
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let k = key(token);
        let mut map = self.map();
        let entry = map.get_mut(&k)?;
        if self.expired(entry, now) {
            map.remove(&k);
            return None;
        }
        entry.last_seen = entry.last_seen.max(now);
        Some(entry.session.clone())
    }

    pub fn remove(&self, token: &str) {
        self.map().remove(&key(token));
    }

    /// Ends every session of a user (removed account, changed password).
    pub fn remove_user(&self, name: &str) {
        self.map().retain(|_, e| e.session.user != name);
    }

    /// Applies a role change to the user's live sessions.
    pub fn set_role(&self, name: &str, role: Role) {
        for e in self.map().values_mut() {
            if e.session.user == name {
                e.session.role = role;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failures counted in this window; a quiet window resets the count.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const ACCOUNT_LIMIT: u32 = 5;
pub const ADDRESS_LIMIT: u32 = 20;
/// The first lockout; each further failure doubles it, up to the window.
pub const THROTTLE_BASE: Duration = Duration::from_secs(30);
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
struct Counters<K> {
    map: HashMap<K, Counter>,
    limit: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Counters<K> {
    fn new(limit: u32) -> Self {
        Counters {
            map: HashMap::new(),
            limit,
        }
    }

    fn live(&self, k: &K, now: Instant) -> Option<Counter> {
        self.map
            .get(k)
            .copied()
            .filter(|c| now.saturating_duration_since(c.last) < THROTTLE_WINDOW)
    }

    /// How long `k` must still wait, if it is locked out.
    fn wait(&self, k: &K, now: Instant) -> Option<Duration> {
        let c = self.live(k, now)?;
        if c.failures < self.limit {
            return None;
        }
        let doublings = (c.failures - self.limit).min(16);
        let lockout = THROTTLE_BASE
            .saturating_mul(1u32 << doublings)
            .min(THROTTLE_WINDOW);
        let until = c.last + lockout;
        (until > now).then(|| until - now)
    }

    fn fail(&mut self, k: K, now: Instant) {
        let failures = self.live(&k, now).map_or(0, |c| c.failures);
        if !self.map.contains_key(&k) && self.map.len() >= MAX_TRACKED {
            self.map
                .retain(|_, c| now.saturating_duration_since(c.last) < THROTTLE_WINDOW);
            if self.map.len() >= MAX_TRACKED
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, c)| c.last)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(
            k,
            Counter {
                failures: failures.saturating_add(1),
                last: now,
            },
        );
    }
}

/// Login throttling per account and per client address.
///
/// After [`ACCOUNT_LIMIT`] failures for one account, or [`ADDRESS_LIMIT`]
/// from one address, within [`THROTTLE_WINDOW`], attempts are refused for
/// [`THROTTLE_BASE`], doubling with each further failure (at most the
/// window). IPv6 clients are counted per /64, since one host usually has a
/// whole /64 to rotate through.
#[derive(Debug)]
pub struct Throttle {
    inner: Mutex<(Counters<String>, Counters<IpAddr>)>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

fn addr_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn account_key(user: &str) -> String {
    // Bounded so a flood of huge names cannot use much memory.
    user.chars().take(crate::users::NAME_MAX).collect()
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            inner: Mutex::new((Counters::new(ACCOUNT_LIMIT), Counters::new(ADDRESS_LIMIT))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Counters<String>, Counters<IpAddr>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` when this attempt must be refused.
    pub fn check(&self, user: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let g = self.lock();
        let a = g.0.wait(&account_key(user), now);
        let b = g.1.wait(&addr_key(addr), now);
        match a.max(b) {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }

    pub fn failure(&self, user: &str, addr: IpAddr, now: Instant) {
        let mut g = self.lock();
        g.0.fail(account_key(user), now);
        g.1.fail(addr_key(addr), now);
    }

    /// Clears the account's count. The address keeps its count: otherwise
    /// one valid account would let an address guess others freely.
    pub fn success(&self, user: &str, _addr: IpAddr, _now: Instant) {
        self.lock().0.map.remove(&account_key(user));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::net::Ipv4Addr;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn session_lifecycle() {
        let s = Sessions::new(10 * MIN, 60 * MIN);
        let t0 = Instant::now();
        let a = s.create("alice", Role::Admin, t0);
        assert_ne!(a.token, a.csrf);
        assert!(a.expires_at_ms > now_ms() + 59 * 60_000);
        let got = s.get(&a.token, t0 + 9 * MIN).unwrap();
        assert_eq!(got.user, "alice");
        // Touched at 9 min, so still alive at 18.
        assert!(s.get(&a.token, t0 + 18 * MIN).is_some());
        assert!(s.get("nope", t0).is_none());
        assert!(
            s.get(&a.csrf, t0).is_none(),
            "the CSRF token is not a session token"
        );
        // Idle expiry removes it.
        assert!(s.get(&a.token, t0 + 29 * MIN).is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn absolute_expiry_despite_activity() {
        let s = Sessions::new(10 * MIN, 30 * MIN);
        let t0 = Instant::now();
        let a = s.create("bob", Role::Viewer, t0);
        for m in (5..30).step_by(5) {
            assert!(s.get(&a.token, t0 + m * MIN).is_some(), "{m}");
        }
        assert!(s.get(&a.token, t0 + 30 * MIN).is_none());
    }

    #[test]
    fn remove_and_remove_user_and_role_change() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a1 = s.create("alice", Role::Operator, t0);
        let a2 = s.create("alice", Role::Operator, t0);
        let b = s.create("bob", Role::Viewer, t0);
        s.set_role("alice", Role::Viewer);
        assert_eq!(s.get(&a1.token, t0).unwrap().role, Role::Viewer);
        s.remove(&b.token);
        assert!(s.get(&b.token, t0).is_none());
        s.remove_user("alice");
        assert!(s.get(&a1.token, t0).is_none() && s.get(&a2.token, t0).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn csrf_compare() {
        let s = Sessions::default().create("a", Role::Viewer, Instant::now());
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&s.token));
        assert!(!format!("{s:?}").contains(&s.token));
    }

    #[test]
    fn account_throttle_doubles_and_caps() {
        let t = Throttle::new();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let t0 = Instant::now();
        for _ in 0..ACCOUNT_LIMIT {
            assert!(t.check("alice", ip, t0).is_ok());
            t.failure("alice", ip, t0);
        }
        assert_eq!(t.check("alice", ip, t0), Err(THROTTLE_BASE));
        assert!(
            t.check("bob", ip, t0).is_ok(),
            "other accounts are not locked"
        );
        let t1 = t0 + THROTTLE_BASE;
        assert!(t.check("alice", ip, t1).is_ok());
        t.failure("alice", ip, t1);
        assert_eq!(t.check("alice", ip, t1), Err(2 * THROTTLE_BASE));
        let mut now = t1;
        for _ in 0..10 {
            now += THROTTLE_WINDOW - Duration::from_secs(1);
            t.failure("alice", ip, now);
        }
        assert_eq!(
            t.check("alice", ip, now),
            Err(THROTTLE_WINDOW),
            "capped at the window"
        );
        t.success("alice", ip, now);
        assert!(t.check("alice", ip, now).is_ok());
    }

    #[test]
    fn quiet_window_resets() {
        let t = Throttle::new();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t0 = Instant::now();
        for _ in 0..ACCOUNT_LIMIT - 1 {
            t.failure("alice", ip, t0);
        }
        let later = t0 + THROTTLE_WINDOW;
        t.failure("alice", ip, later);
        assert!(t.check("alice", ip, later).is_ok());
    }

    #[test]
    fn address_throttle_across_accounts_and_ipv6_prefix() {
        let t = Throttle::new();
        let t0 = Instant::now();
        let ip = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        for i in 0..ADDRESS_LIMIT {
            t.failure(&format!("user{i}"), ip(i as u16), t0);
        }
        assert!(t.check("fresh", ip(999), t0).is_err());
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert!(t.check("fresh", other, t0).is_ok());
        t.success("fresh", ip(1), t0);
        assert!(
            t.check("fresh", ip(1), t0).is_err(),
            "success does not clear the address"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            t.failure(
                &format!("u{i}"),
                ip,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        let g = t.lock();
        assert!(g.0.map.len() <= MAX_TRACKED);
        assert!(g.1.map.len() <= MAX_TRACKED);
    }
}
