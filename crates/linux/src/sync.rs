//! Messages between `berth create` and the processes it forks, over a
//! SOCK_SEQPACKET socketpair: one message per datagram, a tag byte first.
//! EOF means the other side exited.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Stage 1 has joined/created its user namespace and waits for the
    /// parent to write id maps and place it in the cgroup.
    Hello,
    /// Parent → stage 1: carry on.
    Go,
    /// Stage 1 → parent: the container init's pid (in the parent's pid ns).
    Pid(i32),
    /// Init → parent: mounts are done; run prestart/createRuntime hooks.
    HookPoint,
    /// Parent → init: carry on; the state JSON for createContainer hooks
    /// (status "creating") and for startContainer hooks (status "created").
    Continue { creating: Vec<u8>, created: Vec<u8> },
    /// Init → parent: set-up finished, waiting for `start`.
    Ready,
    /// Any child → parent: set-up failed.
    Error(String),
}

pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by us from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Msg::Hello => out.push(b'H'),
            Msg::Go => out.push(b'G'),
            Msg::Pid(p) => {
                out.push(b'P');
                out.extend_from_slice(&p.to_le_bytes());
            }
            Msg::HookPoint => out.push(b'K'),
            Msg::Continue { creating, created } => {
                // A header only: the payload follows in chunks (see `send`).
                out.push(b'C');
                out.extend_from_slice(&(creating.len() as u32).to_le_bytes());
                out.extend_from_slice(&(created.len() as u32).to_le_bytes());
            }
            Msg::Ready => out.push(b'R'),
            Msg::Error(e) => {
                out.push(b'E');
                out.extend_from_slice(e.as_bytes());
            }
        }
        out
    }

    fn decode(b: &[u8]) -> io::Result<Msg> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sync message");
        let (&tag, rest) = b.split_first().ok_or_else(bad)?;
        Ok(match tag {
            b'H' => Msg::Hello,
            b'G' => Msg::Go,
            b'P' => Msg::Pid(i32::from_le_bytes(rest.try_into().map_err(|_| bad())?)),
            b'K' => Msg::HookPoint,
            b'C' => {
                // The header; `recv` reads the payload chunks into these.
                let lens: [u8; 8] = rest.try_into().map_err(|_| bad())?;
                let len = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize;
                Msg::Continue {
                    creating: Vec::with_capacity(len(&lens[..4])),
                    created: Vec::with_capacity(len(&lens[4..])),
                }
            }
            b'R' => Msg::Ready,
            b'E' => Msg::Error(String::from_utf8_lossy(rest).into_owned()),
            _ => return Err(bad()),
        })
    }
}

/// Payloads travel in datagrams this large, well under the socket's limit.
const CHUNK: usize = 32 * 1024;

pub fn send(fd: RawFd, msg: &Msg) -> io::Result<()> {
    send_raw(fd, &msg.encode())?;
    if let Msg::Continue { creating, created } = msg {
        for chunk in creating.chunks(CHUNK).chain(created.chunks(CHUNK)) {
            send_raw(fd, chunk)?;
        }
    }
    Ok(())
}

fn send_raw(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: buf is a valid slice; MSG_NOSIGNAL avoids SIGPIPE.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Receive one message; `Ok(None)` on EOF (the peer exited).
pub fn recv(fd: RawFd) -> io::Result<Option<Msg>> {
    let Some(mut msg) = recv_datagram(fd)?.map(|b| Msg::decode(&b)).transpose()? else {
        return Ok(None);
    };
    if let Msg::Continue { creating, created } = &mut msg {
        for buf in [creating, created] {
            while buf.len() < buf.capacity() {
                let Some(chunk) = recv_datagram(fd)? else {
                    return Ok(None);
                };
                if chunk.len() > buf.capacity() - buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "oversized sync chunk",
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(Some(msg))
}

fn recv_datagram(fd: RawFd) -> io::Result<Option<Vec<u8>>> {
    loop {
        // Peek at the datagram's real size first (MSG_TRUNC reports it).
        let mut probe = [0u8; 1];
        // SAFETY: probe is a valid 1-byte buffer.
        let n = unsafe {
            libc::recv(
                fd,
                probe.as_mut_ptr() as *mut libc::c_void,
                1,
                libc::MSG_PEEK | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; n as usize];
        // SAFETY: buf has n bytes of room.
        let got = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(Some(buf));
    }
}

/// Send `file` over the unix socket `sock` with SCM_RIGHTS, the way
/// containerd and conmon expect a console socket to deliver the pty master
/// (the payload is the terminal's name).
pub fn send_file(sock: RawFd, file: RawFd, name: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [file];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [io::IoSlice::new(name)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .map(drop)
        .map_err(io::Error::from)
}

/// Receive one descriptor sent with SCM_RIGHTS.
pub fn recv_file(sock: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no descriptor in message",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn messages_round_trip() {
        let (a, b) = socketpair().unwrap();
        let msgs = vec![
            Msg::Hello,
            Msg::Go,
            Msg::Pid(4242),
            Msg::HookPoint,
            Msg::Continue {
                creating: b"{\"a\":1}".to_vec(),
                created: vec![b'x'; 1_000_000],
            },
            Msg::Continue {
                creating: Vec::new(),
                created: Vec::new(),
            },
            Msg::Ready,
            Msg::Error("mount proc: EPERM".into()),
        ];
        let expected: Vec<_> = msgs.iter().map(|m| format!("{m:?}")).collect();
        // Larger than the socket buffer: the sender needs a reader.
        let sender = std::thread::spawn(move || {
            for m in &msgs {
                send(a.as_raw_fd(), m).unwrap();
            }
        });
        for want in expected {
            let got = recv(b.as_raw_fd()).unwrap().unwrap();
            assert_eq!(format!("{got:?}"), want);
        }
        sender.join().unwrap();
        assert_eq!(recv(b.as_raw_fd()).unwrap(), None);
    }
}
