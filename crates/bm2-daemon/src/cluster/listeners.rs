//! Which TCP ports a process tree listens on, and through which sockets: the LISTEN sockets of
//! `/proc/<pid>/net/tcp{,6}` matched by inode with the `socket:[inode]` links in
//! `/proc/<pid>/fd` of the tree's processes.
//!
//! A port that accepts connections says nothing about who accepts them: during a fork-mode
//! reload the old process still holds the app's port. Readiness that goes by ports asks which
//! process holds the listening socket.

use std::collections::{BTreeSet, HashMap, HashSet};

/// State code of a listening socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    /// Its local port.
    pub port: u16,
    /// Its inode (as in `/proc/<pid>/fd` links and `fstat`).
    pub inode: u64,
}

/// The listening sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table.
pub fn parse_table(text: &str) -> impl Iterator<Item = Listener> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&LISTEN) {
            return None;
        }
        let (_, port) = fields.get(1)?.rsplit_once(':')?;
        Some(Listener {
            port: u16::from_str_radix(port, 16).ok()?,
            inode: fields.get(9)?.parse().ok()?,
        })
    })
}

/// The inode of a `/proc/<pid>/fd` link target, when it is a socket (`socket:[123]`).
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The listening TCP sockets of the network namespace `pid` is in, by inode.
fn listening_in_namespace_of(pid: u32) -> HashMap<u64, u16> {
    let mut found = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .or_else(|_| std::fs::read_to_string(format!("/proc/net/{table}")))
            .unwrap_or_default();
        found.extend(parse_table(&text).map(|l| (l.inode, l.port)));
    }
    found
}

/// The socket inodes open in any of `pids`.
fn socket_inodes(pids: &[u32]) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in dir.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target.to_str().and_then(socket_inode)
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

/// The listening TCP sockets that the processes `pids` (a tree, main process first) hold.
/// Blocking: reads `/proc`.
pub fn of_tree(pids: &[u32]) -> BTreeSet<Listener> {
    let Some(&main) = pids.first() else {
        return BTreeSet::new();
    };
    let listening = listening_in_namespace_of(main);
    if listening.is_empty() {
        return BTreeSet::new();
    }
    socket_inodes(pids)
        .into_iter()
        .filter_map(|inode| listening.get(&inode).map(|&port| Listener { port, inode }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_are_read_from_both_tables() {
        assert_eq!(
            parse_table(TCP).collect::<Vec<_>>(),
            [Listener {
                port: 8080,
                inode: 4242
            }],
            "the established connection is not a listener"
        );
        assert_eq!(
            parse_table(TCP6).collect::<Vec<_>>(),
            [Listener {
                port: 3000,
                inode: 777
            }]
        );
        assert_eq!(parse_table("header only\n").count(), 0);
        assert_eq!(parse_table("h\n 0: garbage 0A\n").count(), 0);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[123]"), Some(123));
        assert_eq!(socket_inode("pipe:[123]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn a_process_sees_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mine = of_tree(&[std::process::id()]);
        assert!(
            mine.iter().any(|s| s.port == port),
            "{port} not among {mine:?}"
        );
        drop(l);
        let after = of_tree(&[std::process::id()]);
        assert!(!after.iter().any(|s| s.port == port), "{after:?}");
    }
}
