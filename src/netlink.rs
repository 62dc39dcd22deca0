//! rtnetlink: links, addresses, routes, and bind-address autodetection.
//!
//! Every call is one synchronous request on a plain netlink socket: send with a fresh
//! sequence number, read replies (skipping any with another sequence number) until the
//! ACK, the error or the end of the dump. No background thread.

use std::fmt;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::overlay::Cidr;
use zeroize::Zeroizing;

use neli::{
    consts::{
        nl::NlmF,
        rtnl::{
            Arphrd, Ifa, IfaF, Iff, Ifla, IflaInfo, RtAddrFamily, RtScope, RtTable, Rta, RtaType,
            Rtm, Rtn, Rtprot,
        },
        socket::NlFamily,
    },
    err::SocketError,
    rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, Rtattr, RtattrBuilder},
    rtnl::{Rtmsg, RtmsgBuilder},
    socket::synchronous::NlSocketHandle,
    types::{Buffer, RtBuffer},
    utils::Groups,
    Size, ToBytes,
};

/// A failed kernel (or WireGuard daemon) operation: what was being done, and why it failed.
#[derive(Debug, Clone)]
pub struct Error {
    context: String,
    errno: Option<i32>,
    detail: String,
}

impl Error {
    pub(crate) fn new(context: impl Into<String>, detail: impl Into<String>) -> Error {
        Error {
            context: context.into(),
            errno: None,
            detail: detail.into(),
        }
    }

    /// An error number from the kernel or a daemon, described as strerror does.
    pub(crate) fn errno(context: impl Into<String>, errno: i32) -> Error {
        let text = std::io::Error::from_raw_os_error(errno).to_string();
        // std appends " (os error N)"; the description alone reads better in a message.
        let detail = match text.rfind(" (os error ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        let error = Error {
            context: context.into(),
            errno: Some(errno),
            detail,
        };
        if errno == libc::EPERM {
            return error.with_hint("wesher needs root, or the CAP_NET_ADMIN capability");
        }
        error
    }

    /// The positive error number, when the failure carried one.
    pub fn raw_errno(&self) -> Option<i32> {
        self.errno
    }

    pub(crate) fn with_context(mut self, context: impl Into<String>) -> Error {
        self.context = context.into();
        self
    }

    pub(crate) fn with_hint(mut self, hint: &str) -> Error {
        self.detail = format!("{} ({hint})", self.detail);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.detail)
    }
}

impl std::error::Error for Error {}

/// The rtm_protocol of the routes we install ("W"): a route with another protocol is not ours,
/// so it is never replaced or removed. Not among iproute2's rt_protos.
pub const RTPROT_WESHER: u8 = 87;
/// A kernel that takes longer than this to answer is stuck; the loop must not hang on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The size of a netlink message header (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;

/// The payload of one reply message. Zeroized when dropped: a WireGuard device's carries its
/// private key.
pub(crate) type Reply = Zeroizing<Vec<u8>>;

/// One netlink socket doing synchronous request/response exchanges; shared by
/// rtnetlink here and WireGuard's generic netlink.
pub(crate) struct Conn {
    sock: NlSocketHandle,
    seq: u32,
}

impl Conn {
    pub(crate) fn open(family: NlFamily, what: &str) -> Result<Conn, Error> {
        let sock = NlSocketHandle::connect(family, None, Groups::empty()).map_err(|e| {
            let context = format!("opening {what} netlink socket");
            match e {
                SocketError::Io(io) => match io.raw_os_error() {
                    Some(errno) => Error::errno(context, errno),
                    None => Error::new(context, io.to_string()),
                },
                other => Error::new(context, other.to_string()),
            }
        })?;
        set_recv_timeout(sock.as_raw_fd(), REQUEST_TIMEOUT)
            .map_err(|e| Error::new(format!("opening {what} netlink socket"), e.to_string()))?;
        Ok(Conn { sock, seq: 0 })
    }

    /// Sends one request and returns the raw payloads of its replies, for `attributes` to
    /// read: neli's derived parsers cost a router binary 30 KiB. Non-dump requests ask for an
    /// ACK, so a failure always comes back as an error number.
    pub(crate) fn send<T, P>(
        &mut self,
        what: &str,
        ty: T,
        flags: NlmF,
        payload: P,
    ) -> Result<Vec<Reply>, Error>
    where
        T: Into<u16>,
        P: Size + ToBytes,
    {
        let mut bytes = Cursor::new(Vec::with_capacity(payload.padded_size()));
        payload
            .to_bytes(&mut bytes)
            .map_err(|e| Error::new(what, e.to_string()))?;
        self.exchange(what, ty.into(), flags, bytes.get_ref())
    }

    /// The raw exchange of a serialized payload (one holding a secret is its caller's to
    /// zeroize; the message sent is zeroized here). A dump that the kernel marks inconsistent
    /// (the table changed meanwhile) is asked for again.
    pub(crate) fn exchange(
        &mut self,
        what: &str,
        ty: u16,
        flags: NlmF,
        payload: &[u8],
    ) -> Result<Vec<Reply>, Error> {
        for _ in 0..3 {
            if let Some(replies) = self.exchange_once(what, ty, flags, payload)? {
                return Ok(replies);
            }
        }
        Err(Error::new(
            what,
            "the kernel's table kept changing during the dump",
        ))
    }

    /// One request; `None` when a dump came back marked interrupted.
    fn exchange_once(
        &mut self,
        what: &str,
        ty: u16,
        flags: NlmF,
        payload: &[u8],
    ) -> Result<Option<Vec<Reply>>, Error> {
        let fail = |detail: String| Error::new(what, detail);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags.contains(NlmF::DUMP);
        let flags = if dump {
            flags | NlmF::REQUEST
        } else {
            flags | NlmF::REQUEST | NlmF::ACK
        };
        // Written here rather than by neli, whose buffers are freed without being zeroized.
        let padded = payload.len().next_multiple_of(4);
        let len = u32::try_from(NLMSG_HDRLEN + padded)
            .map_err(|_| fail(format!("a request of {} bytes is too large", payload.len())))?;
        let mut msg = Zeroizing::new(Vec::with_capacity(NLMSG_HDRLEN + padded));
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&flags.bits().to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        msg.extend_from_slice(payload);
        msg.resize(NLMSG_HDRLEN + padded, 0);
        // SAFETY: the fd is our open netlink socket; the buffer is valid for its length.
        let sent = unsafe { libc::send(self.sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(fail(std::io::Error::last_os_error().to_string()));
        }

        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            // Read by hand rather than by neli (its message parsing costs a router binary
            // 15 KiB); zeroized, like each reply copied out of it.
            let datagram = self.recv().map_err(|e| fail(e.to_string()))?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let malformed = || fail("malformed reply: a truncated message".into());
                let len = u32_at(rest, 0).ok_or_else(malformed)? as usize;
                let (Some(ty), Some(flags), Some(msg_seq)) =
                    (u16_at(rest, 4), u16_at(rest, 6), u32_at(rest, 8))
                else {
                    return Err(malformed());
                };
                let body = rest.get(NLMSG_HDRLEN..len).ok_or_else(malformed)?;
                rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
                if msg_seq != seq {
                    continue; // left over from an earlier request that failed midway
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                // NLMSG_ERROR: an error number (0 for the ACK); NLMSG_DONE: the end of a
                // dump, with the dump's own error number.
                let errno = || u32_at(body, 0).map(|e| e as i32).ok_or_else(malformed);
                match ty {
                    NLMSG_ERROR => {
                        return match errno()? {
                            0 => Ok(Some(replies)),
                            e => Err(Error::errno(what, e.saturating_neg())),
                        }
                    }
                    NLMSG_DONE if dump => {
                        return match errno().unwrap_or(0) {
                            0 => Ok((!interrupted).then_some(replies)),
                            e => Err(Error::errno(what, e.saturating_neg())),
                        }
                    }
                    // Replies were lost: as for an inconsistent dump, ask again.
                    NLMSG_OVERRUN => interrupted = true,
                    NLMSG_NOOP | NLMSG_DONE => {}
                    _ => replies.push(Zeroizing::new(body.to_vec())),
                }
            }
        }
    }

    /// One datagram from the socket, whole: its size is asked for first (MSG_TRUNC).
    fn recv(&mut self) -> std::io::Result<Zeroizing<Vec<u8>>> {
        let fd = self.sock.as_raw_fd();
        loop {
            // SAFETY: a zero-length peek; the kernel writes nothing into the buffer.
            let size = unsafe {
                libc::recv(
                    fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            let Ok(size) = usize::try_from(size) else {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            };
            let mut buf = Zeroizing::new(vec![0u8; size]);
            // SAFETY: the buffer is valid for writes of its length.
            let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            match usize::try_from(got) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(_)
                    if std::io::Error::last_os_error().kind()
                        == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(std::io::Error::last_os_error()),
            }
        }
    }
}

// Netlink's own message types and the dump's "inconsistent" flag (linux/netlink.h).
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_DUMP_INTR: u16 = 0x10;

fn set_recv_timeout(fd: i32, timeout: Duration) -> std::io::Result<()> {
    // `as _`: the field types' names (time_t, suseconds_t) are deprecated on 32-bit musl, where
    // the libc crate keeps the kernel's old 32-bit timeval that its SO_RCVTIMEO value expects.
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as _,
        tv_usec: timeout.subsec_micros() as _,
    };
    // SAFETY: fd is an open socket and tv a valid timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A network interface as rtnetlink describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFLA_INFO_KIND: "wireguard", "tun", "veth", ...; `None` for physical devices.
    pub kind: Option<String>,
    pub mtu: u32,
    pub up: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A route in the main table through one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub index: u32,
    pub dst: IpAddr,
    pub prefix_len: u8,
}

/// Where to bind the cluster sockets and which address to tell peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindAddrs {
    pub bind: IpAddr,
    pub advertise: IpAddr,
}

/// An address considered by bind autodetection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// The address sits on an interface that carries a default route.
    pub default_route: bool,
}

const EEXIST: i32 = libc::EEXIST;
const ENODEV: i32 = libc::ENODEV;
const ESRCH: i32 = libc::ESRCH;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;

/// An rtnetlink socket.
pub struct Netlink {
    conn: Conn,
}

impl Netlink {
    pub fn open() -> Result<Netlink, Error> {
        Ok(Netlink {
            conn: Conn::open(NlFamily::Route, "route")?,
        })
    }

    /// The interface called `name`, or `None` when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, Error> {
        let msg = ifinfo(0, Iff::empty(), vec![rtattr(Ifla::Ifname, name)?])?;
        match self.conn.send(
            &format!("looking up link {name}"),
            Rtm::Getlink,
            NlmF::empty(),
            msg,
        ) {
            Ok(replies) => Ok(replies.iter().find_map(|r| parse_link(r))),
            Err(e) if e.errno == Some(ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.link(name)?.map(|link| link.index))
    }

    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let msg = ifinfo(0, Iff::empty(), Vec::new())?;
        let replies = self
            .conn
            .send("listing links", Rtm::Getlink, NlmF::DUMP, msg)?;
        Ok(replies.iter().filter_map(|r| parse_link(r)).collect())
    }

    /// Creates a WireGuard link; an existing link of that name (such as one a
    /// userspace daemon made) is returned as it is.
    pub fn create_wireguard(&mut self, name: &str) -> Result<Link, Error> {
        let what = format!("creating link {name}");
        let kind = RtattrBuilder::default()
            .rta_type(Ifla::Linkinfo)
            .rta_payload(Buffer::new())
            .build()
            .map_err(|e| Error::new(&what, e.to_string()))?
            .nest(&rtattr(IflaInfo::Kind, "wireguard")?)
            .map_err(|e| Error::new(&what, e.to_string()))?;
        let msg = ifinfo(0, Iff::empty(), vec![rtattr(Ifla::Ifname, name)?, kind])?;
        match self
            .conn
            .send(&what, Rtm::Newlink, NlmF::CREATE | NlmF::EXCL, msg)
        {
            Ok(_) => {}
            Err(e) if e.errno == Some(EEXIST) => {}
            Err(e) if e.errno == Some(EOPNOTSUPP) => {
                return Err(e.with_hint(
                    "the kernel has no WireGuard module; install wireguard-go or load the module",
                ))
            }
            Err(e) => return Err(e),
        }
        self.link(name)?
            .ok_or_else(|| Error::new(what, "the link vanished right after it was created"))
    }

    /// Deletes a link; one that is gone already is fine.
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        let msg = ifinfo(index, Iff::empty(), Vec::new())?;
        self.on_link(
            index,
            Rtm::Dellink,
            NlmF::empty(),
            msg,
            Some(ENODEV),
            |name| format!("deleting link {name}"),
        )
    }

    /// Sets the MTU and brings the link up.
    pub fn set_mtu_up(&mut self, index: u32, mtu: u32) -> Result<(), Error> {
        let msg = ifinfo(index, Iff::UP, vec![rtattr(Ifla::Mtu, mtu)?])?;
        self.on_link(index, Rtm::Newlink, NlmF::empty(), msg, None, |name| {
            format!("setting MTU {mtu} and up on link {name}")
        })
    }

    /// Every address, or those of one interface; IPv4 first, in kernel order.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>, Error> {
        let msg = ifaddr(RtAddrFamily::Unspecified, 0, 0, Vec::new())?;
        let replies = self
            .conn
            .send("listing addresses", Rtm::Getaddr, NlmF::DUMP, msg)?;
        Ok(replies
            .iter()
            .filter_map(|r| parse_address(r))
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    /// Adds (or refreshes) an address; adding one that is there already is fine.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<(), Error> {
        let msg = address_msg(index, addr, prefix_len)?;
        let flags = NlmF::CREATE | NlmF::REPLACE;
        self.on_link(index, Rtm::Newaddr, flags, msg, None, |name| {
            format!("adding address {addr}/{prefix_len} to link {name}")
        })
    }

    /// Removes an address; removing one that is not there is fine.
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<(), Error> {
        let msg = address_msg(index, addr, prefix_len)?;
        let absent = Some(EADDRNOTAVAIL);
        self.on_link(index, Rtm::Deladdr, NlmF::empty(), msg, absent, |name| {
            format!("removing address {addr}/{prefix_len} from link {name}")
        })
    }

    /// Our routes (of protocol `RTPROT_WESHER`) of the main table through the interface.
    pub fn routes(&mut self, index: u32) -> Result<Vec<Route>, Error> {
        Ok(self
            .main_routes()?
            .into_iter()
            .filter(|(route, proto)| route.index == index && *proto == RTPROT_WESHER)
            .map(|(route, _)| route)
            .collect())
    }

    /// The networks of every address not on `except`: what this node is connected to.
    pub fn connected(&mut self, except: Option<u32>) -> Result<Vec<Cidr>, Error> {
        Ok(self
            .addresses(None)?
            .iter()
            .filter(|a| Some(a.index) != except)
            .filter_map(|a| Cidr::new(a.addr, a.prefix_len).ok())
            .filter(|c| !c.addr().is_loopback() && !is_link_local(c.addr()))
            .map(|c| Cidr::new(c.network(), c.prefix_len()).unwrap_or(c))
            .collect())
    }

    /// Adds a link-scope route of our protocol to `dst/prefix_len` through the interface. It
    /// never replaces a route: when one to the same destination exists (ours through another
    /// link, or anyone else's), the kernel refuses with EEXIST.
    pub fn add_route(&mut self, index: u32, dst: IpAddr, prefix_len: u8) -> Result<(), Error> {
        let msg = route_msg(index, dst, prefix_len)?;
        let flags = NlmF::CREATE | NlmF::EXCL;
        self.on_link(index, Rtm::Newroute, flags, msg, None, |name| {
            format!("adding route {dst}/{prefix_len} to link {name}")
        })
    }

    /// Removes one of our routes (the kernel matches the protocol); removing one that is not
    /// there is fine.
    pub fn del_route(&mut self, index: u32, dst: IpAddr, prefix_len: u8) -> Result<(), Error> {
        let msg = route_msg(index, dst, prefix_len)?;
        self.on_link(
            index,
            Rtm::Delroute,
            NlmF::empty(),
            msg,
            Some(ESRCH),
            |name| format!("removing route {dst}/{prefix_len} from link {name}"),
        )
    }

    /// A change to one link. Callers pass indexes but people read names, so a failure
    /// looks the name up to say which link; `absent` is the error number that means
    /// "already done".
    fn on_link<P>(
        &mut self,
        index: u32,
        ty: Rtm,
        flags: NlmF,
        msg: P,
        absent: Option<i32>,
        what: impl FnOnce(&str) -> String,
    ) -> Result<(), Error>
    where
        P: Size + ToBytes,
    {
        match self.conn.send("", ty, flags, msg) {
            Ok(_) => Ok(()),
            Err(e) if absent.is_some() && e.errno == absent => Ok(()),
            Err(e) => {
                let lookup = ifinfo(index, Iff::empty(), Vec::new())?;
                let name = match self.conn.send("", Rtm::Getlink, NlmF::empty(), lookup) {
                    Ok(replies) => replies.iter().find_map(|r| parse_link(r)).map(|l| l.name),
                    Err(_) => None,
                };
                let name = name.unwrap_or_else(|| format!("#{index}"));
                Err(e.with_context(what(&name)))
            }
        }
    }

    /// The first address of the named interface (--bind-iface), as Go's
    /// `net.Interface.Addrs()[0]`: kernel order, IPv4 before IPv6.
    pub fn first_address(&mut self, name: &str) -> Result<IpAddr, Error> {
        let what = format!("finding the address of interface {name}");
        let index = self
            .link_index(name)?
            .ok_or_else(|| Error::new(&what, "no such interface"))?;
        self.addresses(Some(index))?
            .first()
            .map(|a| a.addr)
            .ok_or_else(|| Error::new(what, "the interface has no address"))
    }

    /// Bind autodetection as Go wesher does it (SPEC section 1); `except` is our own link,
    /// whose overlay address is no underlay.
    pub fn detect_bind(&mut self, except: Option<u32>) -> Result<BindAddrs, Error> {
        let up: Vec<u32> = self
            .links()?
            .iter()
            .filter(|l| l.up && Some(l.index) != except)
            .map(|l| l.index)
            .collect();
        let default_links: Vec<u32> = self
            .main_routes()?
            .iter()
            .filter(|(r, _)| r.prefix_len == 0)
            .map(|(r, _)| r.index)
            .collect();
        let candidates: Vec<Candidate> = self
            .addresses(None)?
            .iter()
            .filter(|a| up.contains(&a.index))
            .map(|a| Candidate {
                addr: a.addr,
                prefix_len: a.prefix_len,
                default_route: default_links.contains(&a.index),
            })
            .collect();
        choose_bind(&candidates).ok_or_else(|| {
            Error::new(
                "detecting the bind address",
                "no usable address on any interface that is up; set --bind-addr",
            )
        })
    }

    /// Unicast routes of the main table with their protocol.
    fn main_routes(&mut self) -> Result<Vec<(Route, u8)>, Error> {
        let msg = RtmsgBuilder::default()
            .rtm_family(RtAddrFamily::Unspecified)
            .rtm_dst_len(0)
            .rtm_src_len(0)
            .rtm_tos(0)
            .rtm_table(RtTable::Unspec)
            .rtm_protocol(Rtprot::Unspec)
            .rtm_scope(RtScope::Universe)
            .rtm_type(Rtn::Unspec)
            .build()
            .map_err(|e| Error::new("listing routes", e.to_string()))?;
        let replies = self
            .conn
            .send("listing routes", Rtm::Getroute, NlmF::DUMP, msg)?;
        Ok(replies.iter().filter_map(|r| parse_route(r)).collect())
    }
}

/// Go wesher's choice: the first public (not RFC 6890) address, then a private one to
/// advertise while binding the wildcard. Addresses on default-route interfaces come
/// first, IPv4 before IPv6, wider networks first (go-sockaddr's ordering); addresses
/// that cannot be forwarded (loopback, link-local, documentation...) are never used.
pub fn choose_bind(candidates: &[Candidate]) -> Option<BindAddrs> {
    let mut usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !in_any(&c.addr, NOT_FORWARDABLE))
        .collect();
    usable.sort_by_key(|c| (!c.default_route, c.addr.is_ipv6(), c.prefix_len));
    if let Some(public) = usable.iter().find(|c| !in_any(&c.addr, RFC6890)) {
        return Some(BindAddrs {
            bind: public.addr,
            advertise: public.addr,
        });
    }
    // The wildcard of the advertised address's family: an IPv4 wildcard socket cannot take
    // the IPv6 gossip that peers send to an advertised IPv6 address.
    usable.first().map(|private| BindAddrs {
        bind: match private.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
        advertise: private.addr,
    })
}

/// RFC 6890 special-purpose blocks (IPv4 and IPv6 registries).
const RFC6890: &[(&str, u8)] = &[
    ("0.0.0.0", 8),
    ("10.0.0.0", 8),
    ("100.64.0.0", 10),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("172.16.0.0", 12),
    ("192.0.0.0", 24),
    ("192.0.2.0", 24),
    ("192.88.99.0", 24),
    ("192.168.0.0", 16),
    ("198.18.0.0", 15),
    ("198.51.100.0", 24),
    ("203.0.113.0", 24),
    ("240.0.0.0", 4),
    ("255.255.255.255", 32),
    ("::1", 128),
    ("::", 128),
    ("64:ff9b::", 96),
    ("::ffff:0:0", 96),
    ("100::", 64),
    ("2001::", 23),
    ("2001:db8::", 32),
    ("2002::", 16),
    ("fc00::", 7),
    ("fe80::", 10),
];

/// The blocks RFC 6890 marks not forwardable (go-sockaddr's "forwardable" flag).
const NOT_FORWARDABLE: &[(&str, u8)] = &[
    ("0.0.0.0", 8),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("192.0.0.0", 24),
    ("192.0.2.0", 24),
    ("198.51.100.0", 24),
    ("203.0.113.0", 24),
    ("240.0.0.0", 4),
    ("255.255.255.255", 32),
    ("::1", 128),
    ("::", 128),
    ("::ffff:0:0", 96),
    ("2001:db8::", 32),
    ("2001:10::", 28),
    ("fe80::", 10),
];

fn in_any(addr: &IpAddr, blocks: &[(&str, u8)]) -> bool {
    blocks.iter().any(|(net, len)| {
        net.parse()
            .ok()
            .and_then(|net| Cidr::new(net, *len).ok())
            .is_some_and(|c| c.contains(*addr))
    })
}

/// IPv4 169.254/16 and IPv6 fe80::/10, which the kernel manages on its own.
pub fn is_link_local(addr: IpAddr) -> bool {
    in_any(&addr, &[("169.254.0.0", 16), ("fe80::", 10)])
}

fn rtattr<T: RtaType, P: Size + ToBytes>(ty: T, payload: P) -> Result<Rtattr<T, Buffer>, Error> {
    RtattrBuilder::default()
        .rta_type(ty)
        .rta_payload(payload)
        .build()
        .map_err(|e| Error::new("building a netlink attribute", e.to_string()))
}

fn ifinfo(index: u32, flags: Iff, attrs: Vec<Rtattr<Ifla, Buffer>>) -> Result<Ifinfomsg, Error> {
    IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .ifi_type(Arphrd::from(0))
        .ifi_index(index as i32)
        .ifi_flags(flags)
        .ifi_change(flags)
        .rtattrs(attrs.into_iter().collect::<RtBuffer<_, _>>())
        .build()
        .map_err(|e| Error::new("building a link message", e.to_string()))
}

fn ifaddr(
    family: RtAddrFamily,
    index: u32,
    prefix_len: u8,
    attrs: Vec<Rtattr<Ifa, Buffer>>,
) -> Result<Ifaddrmsg, Error> {
    IfaddrmsgBuilder::default()
        .ifa_family(family)
        .ifa_prefixlen(prefix_len)
        .ifa_flags(IfaF::empty())
        .ifa_scope(RtScope::Universe)
        .ifa_index(index)
        .rtattrs(attrs.into_iter().collect::<RtBuffer<_, _>>())
        .build()
        .map_err(|e| Error::new("building an address message", e.to_string()))
}

fn family(addr: &IpAddr) -> RtAddrFamily {
    match addr {
        IpAddr::V4(_) => RtAddrFamily::Inet,
        IpAddr::V6(_) => RtAddrFamily::Inet6,
    }
}

fn ip_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(b) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    } else {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b)))
    }
}

fn address_msg(index: u32, addr: IpAddr, prefix_len: u8) -> Result<Ifaddrmsg, Error> {
    // As iproute2 does for a non point-to-point address: local and address are equal.
    let attrs = vec![
        rtattr(Ifa::Local, ip_bytes(&addr))?,
        rtattr(Ifa::Address, ip_bytes(&addr))?,
    ];
    ifaddr(family(&addr), index, prefix_len, attrs)
}

fn route_msg(index: u32, dst: IpAddr, prefix_len: u8) -> Result<Rtmsg, Error> {
    let attrs = vec![rtattr(Rta::Dst, ip_bytes(&dst))?, rtattr(Rta::Oif, index)?];
    RtmsgBuilder::default()
        .rtm_family(family(&dst))
        .rtm_dst_len(prefix_len)
        .rtm_src_len(0)
        .rtm_tos(0)
        .rtm_table(RtTable::Main)
        .rtm_protocol(Rtprot::from(RTPROT_WESHER))
        .rtm_scope(RtScope::Link)
        .rtm_type(Rtn::Unicast)
        .rtattrs(attrs.into_iter().collect::<RtBuffer<_, _>>())
        .build()
        .map_err(|e| Error::new("building a route message", e.to_string()))
}

/// Attribute types carry two flag bits (nested, net byte order) above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// The fixed headers of rtnetlink's messages: ifinfomsg, ifaddrmsg, rtmsg.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;

/// The attributes after a message's fixed header of `header` bytes, as (type, payload) in
/// order; a truncated or malformed one ends the walk.
pub(crate) fn attributes(body: &[u8], header: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(header..).unwrap_or_default();
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, 0)?);
        let ty = u16_at(rest, 2)? & NLA_TYPE_MASK;
        // A length under the attribute header's 4 bytes makes this range empty: None.
        let payload = rest.get(4..len)?;
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((ty, payload))
    })
}

fn attr(body: &[u8], header: usize, ty: u16) -> Option<&[u8]> {
    attributes(body, header).find_map(|(t, p)| (t == ty).then_some(p))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn attr_u32(body: &[u8], header: usize, ty: u16) -> Option<u32> {
    attr(body, header, ty).and_then(|p| u32_at(p, 0))
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// An RTM_NEWLINK message.
fn parse_link(msg: &[u8]) -> Option<Link> {
    let kind = attr(msg, IFINFOMSG_LEN, libc::IFLA_LINKINFO)
        .and_then(|info| attr(info, 0, libc::IFLA_INFO_KIND))
        .map(c_string);
    Some(Link {
        index: u32_at(msg, 4).filter(|&i| i32::try_from(i).is_ok())?,
        name: c_string(attr(msg, IFINFOMSG_LEN, libc::IFLA_IFNAME)?),
        kind,
        mtu: attr_u32(msg, IFINFOMSG_LEN, libc::IFLA_MTU).unwrap_or(0),
        up: u32_at(msg, 8)? & libc::IFF_UP as u32 != 0,
    })
}

/// An RTM_NEWADDR message.
fn parse_address(msg: &[u8]) -> Option<Address> {
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is always ours.
    let bytes = attr(msg, IFADDRMSG_LEN, libc::IFA_LOCAL)
        .or_else(|| attr(msg, IFADDRMSG_LEN, libc::IFA_ADDRESS))?;
    Some(Address {
        index: u32_at(msg, 4)?,
        addr: ip_from_bytes(bytes)?,
        prefix_len: *msg.get(1)?,
    })
}

/// An RTM_NEWROUTE message of the main table, unicast, with its protocol.
fn parse_route(msg: &[u8]) -> Option<(Route, u8)> {
    let header = msg.get(..RTMSG_LEN)?;
    let (family, dst_len, table, protocol, kind) =
        (header[0], header[1], header[4], header[5], header[7]);
    let table = attr_u32(msg, RTMSG_LEN, libc::RTA_TABLE).unwrap_or(u32::from(table));
    if table != u32::from(libc::RT_TABLE_MAIN) || kind != libc::RTN_UNICAST {
        return None;
    }
    let dst = match attr(msg, RTMSG_LEN, libc::RTA_DST) {
        Some(bytes) => ip_from_bytes(bytes)?,
        None if i32::from(family) == libc::AF_INET6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let route = Route {
        index: attr_u32(msg, RTMSG_LEN, libc::RTA_OIF)?,
        dst,
        prefix_len: dst_len,
    };
    Some((route, protocol))
}

/// An attribute as the kernel writes it, for tests here and in wireguard::genl: length, type,
/// payload, padding to 4 bytes.
#[cfg(test)]
pub(crate) fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_in_order_and_a_bad_one_ends_the_walk() {
        let mut body = vec![9; 4]; // a fixed header of 4 bytes
        body.extend(nla(3, b"wg0\0"));
        body.extend(nla(0x8000 | 18, &nla(1, b"wireguard")));
        body.extend(nla(4, &1420u32.to_ne_bytes()));
        let got: Vec<(u16, &[u8])> = attributes(&body, 4).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (3, &b"wg0\0"[..]));
        assert_eq!(got[1].0, 18, "the nested flag is not part of the type");
        assert_eq!(attr(got[1].1, 0, 1), Some(&b"wireguard"[..]));
        assert_eq!(attr_u32(&body, 4, 4), Some(1420));
        // Truncated, too short a length, a length past the end, no header at all.
        for cut in 0..body.len() {
            let n = attributes(&body[..cut], 4).count();
            assert!(n <= 3, "{cut}: {n}");
        }
        let mut bad = vec![0; 4];
        bad.extend_from_slice(&2u16.to_ne_bytes());
        bad.extend_from_slice(&3u16.to_ne_bytes());
        assert_eq!(attributes(&bad, 4).count(), 0);
        bad[4..6].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(attributes(&bad, 4).count(), 0);
        assert_eq!(attributes(&[], 16).count(), 0);
    }

    #[test]
    fn link_address_and_route_messages_are_read() {
        let mut link = vec![0; IFINFOMSG_LEN];
        link[4..8].copy_from_slice(&7i32.to_ne_bytes());
        link[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        link.extend(nla(libc::IFLA_IFNAME, b"wgoverlay\0"));
        link.extend(nla(libc::IFLA_MTU, &1420u32.to_ne_bytes()));
        link.extend(nla(
            libc::IFLA_LINKINFO,
            &nla(libc::IFLA_INFO_KIND, b"wireguard"),
        ));
        let l = parse_link(&link).unwrap();
        assert_eq!(
            (l.index, l.name.as_str(), l.kind.as_deref(), l.mtu, l.up),
            (7, "wgoverlay", Some("wireguard"), 1420, true)
        );
        link[4..8].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_link(&link), None, "a negative index");

        let mut addr = vec![libc::AF_INET as u8, 24, 0, 0];
        addr.extend_from_slice(&3u32.to_ne_bytes());
        addr.extend(nla(libc::IFA_ADDRESS, &[10, 0, 0, 9]));
        addr.extend(nla(libc::IFA_LOCAL, &[10, 0, 0, 1]));
        let a = parse_address(&addr).unwrap();
        assert_eq!((a.index, a.addr, a.prefix_len), (3, ip("10.0.0.1"), 24));

        let mut route = vec![libc::AF_INET6 as u8, 0, 0, 0, libc::RT_TABLE_MAIN];
        route.extend_from_slice(&[RTPROT_WESHER, 0, libc::RTN_UNICAST, 0, 0, 0, 0]);
        route.extend(nla(libc::RTA_OIF, &5u32.to_ne_bytes()));
        let (r, proto) = parse_route(&route).unwrap();
        assert_eq!(
            (r.index, r.dst, r.prefix_len, proto),
            (5, ip("::"), 0, RTPROT_WESHER)
        );
        route.extend(nla(libc::RTA_TABLE, &255u32.to_ne_bytes()));
        assert_eq!(parse_route(&route), None, "the local table");
    }

    fn cand(addr: &str, prefix_len: u8, default_route: bool) -> Candidate {
        Candidate {
            addr: addr.parse().unwrap(),
            prefix_len,
            default_route,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_address_on_default_interface_wins() {
        let got = choose_bind(&[
            cand("127.0.0.1", 8, false),
            cand("192.168.1.2", 24, true),
            cand("2a01:4f8::1", 64, true),
            cand("8.8.4.4", 24, false),
            cand("1.2.3.4", 24, true),
        ])
        .unwrap();
        assert_eq!(got.bind, ip("1.2.3.4"));
        assert_eq!(got.advertise, ip("1.2.3.4"));
    }

    #[test]
    fn ipv4_before_ipv6_and_any_interface_when_default_has_none() {
        let got = choose_bind(&[
            cand("2a01:4f8::1", 64, false),
            cand("10.0.0.1", 8, true),
            cand("5.6.7.8", 16, false),
        ])
        .unwrap();
        assert_eq!(got.bind, ip("5.6.7.8"));
        let v6_only = choose_bind(&[cand("10.0.0.1", 8, true), cand("2a01:4f8::1", 64, false)]);
        assert_eq!(v6_only.unwrap().bind, ip("2a01:4f8::1"));
    }

    #[test]
    fn private_only_binds_wildcard_and_advertises_first_private() {
        let got = choose_bind(&[
            cand("127.0.0.1", 8, false),
            cand("fe80::1", 64, true),
            cand("fd00::1", 64, true),
            cand("172.16.5.5", 12, false),
            cand("192.168.1.2", 24, true),
        ])
        .unwrap();
        assert_eq!(got.bind, ip("0.0.0.0"));
        assert_eq!(got.advertise, ip("192.168.1.2"));
        // An IPv6-only underlay binds the IPv6 wildcard.
        let v6 = choose_bind(&[cand("fe80::1", 64, true), cand("fd00::1", 64, true)]).unwrap();
        assert_eq!(v6.bind, ip("::"));
        assert_eq!(v6.advertise, ip("fd00::1"));
    }

    #[test]
    fn nothing_usable_is_none() {
        assert_eq!(
            choose_bind(&[cand("127.0.0.1", 8, true), cand("::1", 128, true)]),
            None
        );
        assert_eq!(choose_bind(&[cand("169.254.1.1", 16, true)]), None);
    }

    #[test]
    fn rfc6890_membership() {
        for private in [
            "10.1.2.3",
            "100.64.0.1",
            "172.31.255.255",
            "fd12::1",
            "2001:db8::1",
        ] {
            assert!(in_any(&ip(private), RFC6890), "{private}");
        }
        for public in ["1.1.1.1", "172.32.0.1", "100.128.0.1", "2a00:1450::1"] {
            assert!(!in_any(&ip(public), RFC6890), "{public}");
        }
        assert!(in_any(&ip("9.9.9.9"), &[("0.0.0.0", 0)]));
        assert!(!in_any(&ip("9.9.9.9"), &[("::", 0)]));
        assert!(is_link_local(ip("fe80::1")) && !is_link_local(ip("fd00::1")));
    }

    #[test]
    fn errno_errors_read_well() {
        // The description is the C library's (glibc: "Operation not supported", musl:
        // "Not supported"), without std's "(os error N)".
        let e = Error::errno("creating link wg0", EOPNOTSUPP).with_hint("a hint");
        let text = e.to_string();
        assert!(text.starts_with("creating link wg0: "), "{text}");
        assert!(text.ends_with("upported (a hint)"), "{text}");
        assert!(!text.contains("os error"), "{text}");
        assert_eq!(e.raw_errno(), Some(EOPNOTSUPP));
        let e = Error::errno("creating link wg0", libc::EPERM).to_string();
        assert!(
            e.ends_with("(wesher needs root, or the CAP_NET_ADMIN capability)"),
            "{e}"
        );
    }
}
