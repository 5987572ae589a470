//! Descriptors carried across the daemon's re-exec: written into the handover state as their
//! numbers, kept open through `execve` (their close-on-exec flag cleared just before it), and
//! taken back by number, once each, by the new daemon. Taking a descriptor by its number is
//! the one thing here that needs `unsafe`.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A descriptor that goes with the handover state.
#[derive(Debug)]
pub struct Fd(pub OwnedFd);

impl Fd {
    /// Takes `fd`.
    pub fn new(fd: impl Into<OwnedFd>) -> Fd {
        Fd(fd.into())
    }

    /// The descriptor.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

thread_local! {
    /// Descriptors met while serialising (to keep open through exec), or taken while
    /// deserialising (each number may be taken once).
    static SEEN: RefCell<Option<BTreeSet<RawFd>>> = const { RefCell::new(None) };
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = self.0.as_raw_fd();
        SEEN.with_borrow_mut(|seen| {
            if let Some(seen) = seen {
                seen.insert(raw);
            }
        });
        s.serialize_i32(raw)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fd, D::Error> {
        let raw = i32::deserialize(d)?;
        let fresh = SEEN.with_borrow_mut(|seen| seen.as_mut().is_some_and(|s| s.insert(raw)));
        if !fresh {
            return Err(serde::de::Error::custom(format!(
                "descriptor {raw} taken twice or outside a handover"
            )));
        }
        if raw < 3 {
            return Err(serde::de::Error::custom(format!(
                "descriptor {raw} is a standard stream"
            )));
        }
        // SAFETY: the number was checked open just below before it is owned; each number is
        // taken at most once (above), so no two owners close it.
        let flags = fcntl(unsafe { BorrowedFd::borrow_raw(raw) }, FcntlArg::F_GETFD)
            .map_err(|e| serde::de::Error::custom(format!("descriptor {raw}: {e}")))?;
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Not passed on to the apps this daemon starts.
        let mut flags = FdFlag::from_bits_truncate(flags);
        flags.insert(FdFlag::FD_CLOEXEC);
        let _ = fcntl(&fd, FcntlArg::F_SETFD(flags));
        Ok(Fd(fd))
    }
}

/// A descriptor of the open descriptor `raw`, which the caller knows is open for the call's
/// duration (the connection of the request being served).
pub fn dup_raw(raw: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the caller guarantees `raw` is open while this runs; it is only duplicated.
    unsafe { BorrowedFd::borrow_raw(raw) }.try_clone_to_owned()
}

/// Takes ownership of descriptor `raw`, given on the command line by the daemon that
/// re-executed itself (checked open, taken once per process).
pub fn take_raw(raw: RawFd) -> std::io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if raw < 3 || TAKEN.swap(true, Ordering::SeqCst) {
        return Err(std::io::Error::other(format!(
            "descriptor {raw} cannot be taken"
        )));
    }
    // SAFETY: checked open just below before it is owned, and taken at most once.
    fcntl(unsafe { BorrowedFd::borrow_raw(raw) }, FcntlArg::F_GETFD)?;
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Serialises `value`, returning the JSON and the descriptors it carries.
pub fn serialize<T: Serialize>(value: &T) -> serde_json::Result<(Vec<u8>, Vec<RawFd>)> {
    SEEN.with_borrow_mut(|seen| *seen = Some(BTreeSet::new()));
    let json = serde_json::to_vec(value);
    let fds = SEEN
        .with_borrow_mut(Option::take)
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((json?, fds))
}

/// Reads a value serialised by [`serialize`], taking ownership of its descriptors.
pub fn deserialize<T: for<'de> Deserialize<'de>>(json: &[u8]) -> serde_json::Result<T> {
    SEEN.with_borrow_mut(|seen| *seen = Some(BTreeSet::new()));
    let value = serde_json::from_slice(json);
    SEEN.with_borrow_mut(|seen| *seen = None);
    value
}

/// Sets (`true`) or clears the close-on-exec flag of `fds`.
pub fn set_cloexec(fds: &[RawFd], on: bool) -> std::io::Result<()> {
    for &raw in fds {
        // SAFETY: the caller holds these descriptors open (they belong to the state being
        // handed over) for the duration of the call.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let mut flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
        flags.set(FdFlag::FD_CLOEXEC, on);
        fcntl(fd, FcntlArg::F_SETFD(flags))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Carried {
        a: Fd,
        b: Vec<Fd>,
    }

    #[test]
    fn descriptors_round_trip_by_number_once() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let original = Carried {
            a: Fd(r),
            b: vec![Fd(w)],
        };
        let (json, fds) = serialize(&original).unwrap();
        assert_eq!(fds.len(), 2);
        // Ownership passes to what is read back, as across an exec.
        std::mem::forget(original);
        let back: Carried = deserialize(&json).unwrap();
        let mut taken = vec![back.a.0.as_raw_fd(), back.b[0].0.as_raw_fd()];
        taken.sort_unstable();
        assert_eq!(fds, taken);
        let flags = fcntl(&back.a.0, FcntlArg::F_GETFD).unwrap();
        assert!(FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn a_number_taken_twice_is_refused() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let raw = r.as_raw_fd();
        let json = format!("{{\"a\":{raw},\"b\":[{raw}]}}");
        std::mem::forget(r);
        let err = deserialize::<Carried>(json.as_bytes()).err().unwrap();
        assert!(err.to_string().contains("taken twice"), "{err}");
    }
}
