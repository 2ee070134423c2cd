//! The node's link-local endpoint address: `irsa agent link` adds
//! `169.254.170.23/32` (and optionally `fd00:ec2::23/128`) to the host's
//! loopback device, so pods reach the node agent there, as EKS nodes do.
//! One rtnetlink `RTM_NEWADDR` request per address, built here (a few
//! fixed-size headers); an address already present counts as done, so the
//! DaemonSet's init container can run on every restart.

use std::io;
use std::net::IpAddr;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

const RTM_NEWADDR: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const EEXIST: i32 = 17;

/// What adding an address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The kernel added it.
    New,
    /// It was there already.
    Present,
}

fn attribute(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The `RTM_NEWADDR` request for `ip` as a host address on interface
/// `index` (global scope, full-length prefix).
pub fn new_address_request(ip: IpAddr, index: u32, seq: u32) -> Vec<u8> {
    let (family, prefix, bytes) = match ip {
        IpAddr::V4(v4) => (AF_INET, 32u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (AF_INET6, 128u8, v6.octets().to_vec()),
    };
    let mut body = Vec::with_capacity(40);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    body.extend_from_slice(&[family, prefix, 0, 0]);
    body.extend_from_slice(&index.to_ne_bytes());
    attribute(&mut body, IFA_LOCAL, &bytes);
    attribute(&mut body, IFA_ADDRESS, &bytes);
    let mut msg = Vec::with_capacity(16 + body.len());
    // struct nlmsghdr: len, type, flags, seq, pid (0: the kernel fills it).
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// Reads the kernel's acknowledgement of request `seq`: `Ok(errno)` with
/// 0 for success, or an error when the reply is not an acknowledgement.
pub fn parse_ack(reply: &[u8], seq: u32) -> io::Result<i32> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("rtnetlink reply: {what}"),
        )
    };
    let u32_at = |at: usize| -> Option<u32> {
        reply
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let len = u32_at(0).ok_or_else(|| bad("shorter than its header"))? as usize;
    if len < 20 || len > reply.len() {
        return Err(bad("length out of range"));
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind != NLMSG_ERROR {
        return Err(bad("not an acknowledgement"));
    }
    if u32_at(8) != Some(seq) {
        return Err(bad("acknowledges another request"));
    }
    let errno = u32_at(16).ok_or_else(|| bad("no error field"))? as i32;
    Ok(-errno)
}

/// Adds `ip` to the loopback device of this network namespace (needs
/// CAP_NET_ADMIN in it).
pub fn add_loopback_address(ip: IpAddr) -> io::Result<Added> {
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    let index = rustix::net::netdevice::name_to_index(&fd, "lo")?;
    let seq = 1;
    let request = new_address_request(ip, index, seq);
    rustix::net::sendto(
        &fd,
        &request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut reply = [0u8; 1024];
    let (n, _) = rustix::net::recv(&fd, &mut reply, RecvFlags::empty())?;
    match parse_ack(&reply[..n.min(reply.len())], seq)? {
        0 => Ok(Added::New),
        EEXIST => Ok(Added::Present),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_laid_out_as_the_kernel_reads_it() {
        let m = new_address_request("169.254.170.23".parse().expect("ip"), 1, 7);
        // 16 header + 8 ifaddrmsg + 2 × (4 + 4) attributes.
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().expect("4")), 40);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWADDR);
        assert_eq!(&m[16..20], &[AF_INET, 32, 0, 0]);
        assert_eq!(&m[28..32], &[169, 254, 170, 23]);
        let v6 = new_address_request("fd00:ec2::23".parse().expect("ip"), 1, 7);
        assert_eq!(v6.len(), 16 + 8 + 2 * 20);
        assert_eq!(v6[17], 128);
    }

    #[test]
    fn acknowledgements_are_read_and_anything_else_refused() {
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&0u16.to_ne_bytes());
        ack.extend_from_slice(&7u32.to_ne_bytes());
        ack.extend_from_slice(&0u32.to_ne_bytes());
        ack.extend_from_slice(&(-EEXIST).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(parse_ack(&ack, 7).expect("ack"), EEXIST);
        assert!(parse_ack(&ack, 8).is_err());
        assert!(parse_ack(&ack[..10], 7).is_err());
        let mut other = ack.clone();
        other[4] = 99;
        assert!(parse_ack(&other, 7).is_err());
        let mut long = ack;
        long[0] = 200;
        assert!(parse_ack(&long, 7).is_err());
    }
}
