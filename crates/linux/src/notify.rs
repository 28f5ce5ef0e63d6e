//! Hands a seccomp notify listener descriptor to `linux.seccomp.listenerPath`.
//!
//! As runc does: connect to the unix socket, send one JSON object (the OCI
//! `ContainerProcessState`: ociVersion, fds, pid, metadata, state) with the
//! descriptor attached (SCM_RIGHTS) to its first byte, then close.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use serde_json::{json, Value};

use crate::process::NotifyListener;
use crate::LinuxError;

/// The name of the listener descriptor in `fds`, from the runtime spec.
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// The message for the listener: `state` is the container's state JSON.
pub fn process_state(state: &[u8], pid: i32, metadata: &str) -> Vec<u8> {
    let state: Value = serde_json::from_slice(state).unwrap_or_else(|_| json!({}));
    // The runtime spec version berth implements, as runc sends its own.
    let mut msg = json!({
        "ociVersion": berth_bundle::OCI_VERSION_MAX,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if !metadata.is_empty() {
        msg["metadata"] = json!(metadata);
    }
    serde_json::to_vec(&msg).unwrap_or_default()
}

pub fn hand_over(l: &NotifyListener, msg: &[u8], fd: RawFd) -> Result<(), LinuxError> {
    let what = || format!("linux.seccomp.listenerPath: {}", l.path.display());
    let mut sock = UnixStream::connect(&l.path).map_err(|source| LinuxError::Io {
        what: format!("{}: connect", what()),
        source,
    })?;
    let sent = send_with_fd(sock.as_raw_fd(), msg, fd).map_err(|source| LinuxError::Io {
        what: format!("{}: send the listener descriptor", what()),
        source,
    })?;
    sock.write_all(&msg[sent..])
        .map_err(|source| LinuxError::Io {
            what: format!("{}: send the container state", what()),
            source,
        })
}

fn send_with_fd(sock: RawFd, buf: &[u8], fd: RawFd) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [io::IoSlice::new(buf)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shape() {
        let state =
            br#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#;
        let v: Value = serde_json::from_slice(&process_state(state, 42, "meta")).unwrap();
        assert_eq!(v["fds"], json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["ociVersion"], berth_bundle::OCI_VERSION_MAX);
        let v: Value = serde_json::from_slice(&process_state(state, 42, "")).unwrap();
        assert!(v.get("metadata").is_none(), "{v}");
        assert_eq!(v["state"]["id"], "c1");
        assert_eq!(v["state"]["status"], "creating");
    }
}
