//! Vsock packets: the header, the operations, and the checks on everything the guest gives
//! us before the muxer sees it.
//!
//! Descriptor chains are parsed by `virtio-vsock`'s [`VsockPacket`] (header and payload in
//! one descriptor, or one each; directions, lengths and guest-memory bounds are checked
//! there). This module adds what the device knows and the crate does not: who may talk to
//! whom (CIDs), which socket type and operations exist, and the payload limit.

use virtio_queue::DescriptorChain;
use virtio_vsock::packet::{VsockPacket, PKT_HEADER_SIZE};
use vm_memory::{Bytes, VolatileSlice};

use crate::devices::virtio::backend::GuestMemory;

/// The host's context ID.
pub const HOST_CID: u64 = 2;
/// Size of the packet header in guest memory.
pub const HEADER_SIZE: usize = PKT_HEADER_SIZE;
/// [`HEADER_SIZE`] as a descriptor length.
pub const HEADER_LEN: u32 = 44;
const _: () = assert!(HEADER_LEN as usize == HEADER_SIZE);
/// The largest payload of one packet, either way.
pub const MAX_PAYLOAD: u32 = 64 * 1024;
/// `VIRTIO_VSOCK_TYPE_STREAM`, the only socket type this device offers.
pub const TYPE_STREAM: u16 = 1;
/// Shutdown flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// Shutdown flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// A guest memory slice as the device sees it.
pub type Slice<'a> = VolatileSlice<'a, ()>;

/// Packet operations (`VIRTIO_VSOCK_OP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Op {
    /// Connection request.
    Request = 1,
    /// Connection accepted.
    Response = 2,
    /// Connection reset (refused, or torn down).
    Rst = 3,
    /// The sender will no longer receive and/or send (see the flags).
    Shutdown = 4,
    /// Payload.
    Rw = 5,
    /// The sender's buffer space and forwarded count, unrequested or as an answer.
    CreditUpdate = 6,
    /// Asks the peer for a credit update.
    CreditRequest = 7,
}

impl Op {
    /// The operation with wire value `value`, if it is one.
    pub fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }
}

/// A packet header (`struct virtio_vsock_hdr`), decoded. Values are copied out of guest
/// memory once, so the guest cannot change them between check and use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Source context ID.
    pub src_cid: u64,
    /// Destination context ID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation ([`Op`]).
    pub op: u16,
    /// Operation flags (shutdown flags for [`Op::Shutdown`]).
    pub flags: u32,
    /// The sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer, in total.
    pub fwd_cnt: u32,
}

impl Header {
    /// A header from the host to the guest.
    pub fn host_to_guest(guest_cid: u64, src_port: u32, dst_port: u32, op: Op) -> Self {
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op: op as u16,
            ..Header::default()
        }
    }

    /// The header as it is laid out in guest memory (little endian, packed).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    /// Decodes a header laid out as in guest memory.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap_or([0; 2]));
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    fn of_packet(pkt: &VsockPacket<'_, ()>) -> Self {
        Header {
            src_cid: pkt.src_cid(),
            dst_cid: pkt.dst_cid(),
            src_port: pkt.src_port(),
            dst_port: pkt.dst_port(),
            len: pkt.len(),
            type_: pkt.type_(),
            op: pkt.op(),
            flags: pkt.flags(),
            buf_alloc: pkt.buf_alloc(),
            fwd_cnt: pkt.fwd_cnt(),
        }
    }
}

/// Why a TX packet was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The descriptor chain cannot hold a packet.
    #[error("malformed descriptor chain: {0}")]
    Chain(virtio_vsock::packet::Error),
    /// Source or destination is not guest → host.
    #[error("packet from CID {src} to CID {dst}; only {guest} -> {HOST_CID} is allowed")]
    BadCid {
        /// The source CID it carried.
        src: u64,
        /// The destination CID it carried.
        dst: u64,
        /// The guest's CID.
        guest: u64,
    },
    /// Not a stream packet.
    #[error("socket type {0} is not stream ({TYPE_STREAM})")]
    BadType(u16),
    /// Not an operation we know.
    #[error("unknown operation {0}")]
    UnknownOp(u16),
    /// A payload on an operation that carries none.
    #[error("operation {op:?} with a {len}-byte payload")]
    UnexpectedPayload {
        /// The operation.
        op: Op,
        /// The payload length it claimed.
        len: u32,
    },
}

/// The payload of a guest packet.
#[derive(Debug)]
pub enum Payload<'a> {
    /// In one descriptor: used in place, in guest memory.
    Guest(Slice<'a>),
    /// Spread over several descriptors (Linux sends large packets as scatter-gather
    /// lists): gathered into one buffer by virtio-queue's `Reader`.
    Gathered(Vec<u8>),
}

impl Payload<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Guest(slice) => slice.len(),
            Self::Gathered(bytes) => bytes.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A packet the guest sent, checked.
#[derive(Debug)]
pub struct TxPacket<'a> {
    /// The header, copied out of guest memory.
    pub header: Header,
    /// The operation.
    pub op: Op,
    /// The payload, `header.len` bytes (present exactly for non-empty [`Op::Rw`]).
    pub data: Option<Payload<'a>>,
}

/// A packet the device refused, with its header when the header itself could be read (so
/// the muxer can reset the connection it belongs to).
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: PacketError,
    /// The header, if it was readable.
    pub header: Option<Header>,
}

/// Parses and checks the packet the guest put in a TX chain.
pub fn parse_tx<'a>(
    mem: &'a GuestMemory,
    mut chain: DescriptorChain<&'a GuestMemory>,
    guest_cid: u64,
) -> Result<TxPacket<'a>, Rejected> {
    let head = chain.clone().next();
    let whole_chain = chain.clone();
    let pkt = match VsockPacket::from_tx_virtq_chain(mem, &mut chain, MAX_PAYLOAD) {
        Ok(pkt) => pkt,
        Err(virtio_vsock::packet::Error::DescriptorLengthTooSmall) => {
            return gather_tx(mem, whole_chain, guest_cid);
        }
        Err(error) => {
            let header = head.and_then(|d| {
                if d.is_write_only() || (d.len() as usize) < HEADER_SIZE {
                    return None;
                }
                let mut bytes = [0u8; HEADER_SIZE];
                mem.read_slice(&mut bytes, d.addr())
                    .ok()
                    .map(|()| Header::from_bytes(&bytes))
            });
            return Err(Rejected {
                error: PacketError::Chain(error),
                header,
            });
        }
    };
    let header = Header::of_packet(&pkt);
    let data = pkt.data_slice().copied().map(Payload::Guest);
    check(header, data, guest_cid)
}

/// A TX chain whose payload spans several descriptors: read the header and gather the
/// payload with virtio-queue's `Reader`, which checks every descriptor's direction and
/// bounds.
fn gather_tx<'a>(
    mem: &'a GuestMemory,
    chain: DescriptorChain<&'a GuestMemory>,
    guest_cid: u64,
) -> Result<TxPacket<'a>, Rejected> {
    use std::io::Read;
    let too_small = || Rejected {
        error: PacketError::Chain(virtio_vsock::packet::Error::DescriptorLengthTooSmall),
        header: None,
    };
    if chain.clone().any(|d| d.is_write_only()) {
        return Err(Rejected {
            error: PacketError::Chain(virtio_vsock::packet::Error::UnexpectedWriteOnlyDescriptor),
            header: None,
        });
    }
    let mut reader = virtio_queue::Reader::new(mem, chain).map_err(|_| too_small())?;
    let mut bytes = [0u8; HEADER_SIZE];
    reader.read_exact(&mut bytes).map_err(|_| too_small())?;
    let header = Header::from_bytes(&bytes);
    let len = header.len as usize;
    if header.len > MAX_PAYLOAD {
        return Err(Rejected {
            error: PacketError::Chain(virtio_vsock::packet::Error::InvalidHeaderLen(header.len)),
            header: Some(header),
        });
    }
    if reader.available_bytes() < len {
        return Err(Rejected {
            error: too_small().error,
            header: Some(header),
        });
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(|_| Rejected {
        error: too_small().error,
        header: Some(header),
    })?;
    let data = (len > 0).then_some(Payload::Gathered(payload));
    check(header, data, guest_cid)
}

/// The checks every TX packet passes, however its payload was laid out.
fn check(
    header: Header,
    data: Option<Payload<'_>>,
    guest_cid: u64,
) -> Result<TxPacket<'_>, Rejected> {
    let reject = |error| {
        Err(Rejected {
            error,
            header: Some(header),
        })
    };
    if header.src_cid != guest_cid || header.dst_cid != HOST_CID {
        return reject(PacketError::BadCid {
            src: header.src_cid,
            dst: header.dst_cid,
            guest: guest_cid,
        });
    }
    if header.type_ != TYPE_STREAM {
        return reject(PacketError::BadType(header.type_));
    }
    let Some(op) = Op::from_u16(header.op) else {
        return reject(PacketError::UnknownOp(header.op));
    };
    if op != Op::Rw && header.len != 0 {
        return reject(PacketError::UnexpectedPayload {
            op,
            len: header.len,
        });
    }
    Ok(TxPacket { header, op, data })
}

/// An RX buffer the driver gave us, ready to be filled.
#[derive(Debug)]
pub struct RxBuffer<'a> {
    pkt: VsockPacket<'a, ()>,
}

impl<'a> RxBuffer<'a> {
    /// Checks that the RX chain can hold a header and a payload (writable, inside guest
    /// memory, payload buffer at most [`MAX_PAYLOAD`] when it is a descriptor of its own).
    pub fn parse(
        mem: &'a GuestMemory,
        chain: &mut DescriptorChain<&'a GuestMemory>,
    ) -> Result<Self, virtio_vsock::packet::Error> {
        VsockPacket::from_rx_virtq_chain(mem, chain, MAX_PAYLOAD).map(|pkt| RxBuffer { pkt })
    }

    /// Room for payload, capped at [`MAX_PAYLOAD`].
    pub fn capacity(&self) -> usize {
        let room = self.pkt.data_slice().map_or(0, VolatileSlice::len);
        room.min(MAX_PAYLOAD as usize)
    }

    /// The payload area, [`Self::capacity`] bytes.
    pub fn data(&self) -> Option<Slice<'a>> {
        let slice = self.pkt.data_slice()?;
        slice.subslice(0, self.capacity()).ok()
    }

    /// Writes the header; returns the used length of the buffer (header + payload).
    pub fn finish(&mut self, header: &Header) -> Result<u32, virtio_vsock::packet::Error> {
        self.pkt.set_header_from_raw(&header.to_bytes())?;
        let total = HEADER_SIZE + header.len as usize;
        Ok(u32::try_from(total).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_bytes() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 0x1234_5678,
            dst_port: 1024,
            len: 77,
            type_: TYPE_STREAM,
            op: Op::Rw as u16,
            flags: SHUTDOWN_SEND,
            buf_alloc: 256 * 1024,
            fwd_cnt: 0xdead_beef,
        };
        let bytes = h.to_bytes();
        assert_eq!(&bytes[0..8], &3u64.to_le_bytes());
        assert_eq!(&bytes[30..32], &5u16.to_le_bytes());
        assert_eq!(Header::from_bytes(&bytes), h);
    }

    #[test]
    fn ops_decode_and_reject_unknown() {
        for v in 1..=7u16 {
            assert_eq!(Op::from_u16(v).map(|op| op as u16), Some(v));
        }
        assert_eq!(Op::from_u16(0), None);
        assert_eq!(Op::from_u16(8), None);
        assert_eq!(Op::from_u16(u16::MAX), None);
    }
}
