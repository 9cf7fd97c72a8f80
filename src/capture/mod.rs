//! Capture sources: pcap and pcapng files (or stdin), read as a stream of records.
//!
//! The reader never loads a whole file: `pcap-parser` keeps a bounded circular buffer, which we grow
//! only as far as [`MAX_RECORD_BYTES`] so that a corrupted length field cannot make us allocate gigabytes.
//! A compressed file is decompressed as a stream in front of it ([`compressed`]).

pub mod compressed;
pub mod defrag;
pub mod link;
pub mod live;
pub mod scan;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use compressed::{Compression, Counted, Position};

use pcap_parser::pcapng::{Block, SecretsType};
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{PcapBlockOwned, PcapError};

/// Link-layer header type (LINKTYPE_* numbers from tcpdump.org).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkType(pub u32);

/// Largest record we are willing to buffer. Real snap lengths are at most 256 KiB; pcapng blocks
/// with options can be somewhat larger.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Grown on demand up to [`MAX_RECORD_BYTES`]; `circular::Buffer` fills its whole capacity
/// up front, so starting small keeps opening a file cheap.
const INITIAL_BUFFER: usize = 128 << 10;

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// 1-based index of the record among packet records, as tshark numbers frames.
    pub index: u64,
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire; larger than `data.len()` when the snap length cut the packet.
    pub orig_len: u32,
}

impl Packet<'_> {
    /// The packet, kept past the reader's buffer.
    pub fn to_owned_packet(&self) -> OwnedPacket {
        OwnedPacket {
            ts_ns: self.ts_ns,
            link: self.link,
            data: self.data.to_vec(),
            orig_len: self.orig_len,
        }
    }
}

/// A packet kept past the reader's buffer: one held back from a file being written.
#[derive(Debug, Clone)]
pub struct OwnedPacket {
    pub ts_ns: i64,
    pub link: LinkType,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

/// Interfaces a pcapng section may describe (a hostile file could describe millions), and
/// records referring to an undeclared one that are listed one by one.
const MAX_INTERFACES: usize = 65_536;
const MAX_UNKNOWN_INTERFACE_WARNINGS: usize = 20;

/// Notes a record of an undeclared interface: the first few one by one, then a count, so that
/// a file of them makes no warning per record.
fn unknown_interface(warnings: &mut Vec<CaptureWarning>, record: u64, interface: u32) {
    let listed = warnings
        .iter()
        .filter(|w| matches!(w, CaptureWarning::UnknownInterface { .. }))
        .count();
    if listed < MAX_UNKNOWN_INTERFACE_WARNINGS {
        warnings.push(CaptureWarning::UnknownInterface { record, interface });
        return;
    }
    let more = warnings.iter_mut().find_map(|w| match w {
        CaptureWarning::MoreUnknownInterfaces { count, last_record } => Some((count, last_record)),
        _ => None,
    });
    match more {
        Some((count, last_record)) => {
            *count += 1;
            *last_record = record;
        }
        None => warnings.push(CaptureWarning::MoreUnknownInterfaces {
            count: 1,
            last_record: record,
        }),
    }
}

/// Something in the file that is not a readable packet, but does not stop the reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureWarning {
    /// The file ends in the middle of a record (a capture that was still being written, or cut).
    #[error("the file ends inside the record after record {after_record} (truncated capture)")]
    TruncatedRecord { after_record: u64 },
    /// A packet block references an interface that was never described.
    #[error("record {record} refers to undeclared interface {interface}; skipped")]
    UnknownInterface { record: u64, interface: u32 },
    /// More records than are listed one by one refer to undeclared interfaces.
    #[error("{count} more records refer to undeclared interfaces, the last record {last_record}; skipped")]
    MoreUnknownInterfaces { count: u64, last_record: u64 },
    /// The compressed stream the capture is read from is cut or damaged here; nothing after
    /// it is read.
    #[error("{reason}, after record {after_record}; the rest is not read")]
    CompressedStreamEnds { after_record: u64, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot open: {source}")]
    Open { path: String, source: io::Error },
    #[error("{path}: empty input (no capture file header)")]
    Empty { path: String },
    #[error("{path}: not a pcap or pcapng file (unrecognised header); h2scope reads tcpdump/Wireshark captures, plain or compressed with gzip, zstd or LZ4")]
    NotACapture { path: String },
    #[error("{path}: {compression}-compressed, but what it holds is not a pcap or pcapng file")]
    NotACaptureInside {
        path: String,
        compression: &'static str,
    },
    #[error("{path}: {reason} before its capture file header; nothing to read")]
    CompressedHeader { path: String, reason: String },
    #[error("{path}: the file ends inside its pcap/pcapng header; nothing to read")]
    TruncatedHeader { path: String },
    #[error("{path}: read error after record {record}")]
    Read { path: String, record: u64 },
    #[error("{path}: record {record} claims {size} bytes, more than the {max} a capture record may have; the file is corrupt from here on")]
    RecordTooLarge {
        path: String,
        record: u64,
        size: usize,
        max: usize,
    },
    #[error("{path}: malformed data after record {record} (byte offset {offset}); the rest of the file is not readable")]
    Malformed {
        path: String,
        record: u64,
        offset: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_secs: i64,
}

/// Streaming reader over a pcap or pcapng file.
pub struct CaptureReader {
    name: String,
    inner: Box<dyn PcapReaderIterator + Send>,
    state: State,
    position: Position,
    compression: Option<Compression>,
    /// Why a compressed stream ended early, set by its decompressor.
    damage: Arc<OnceLock<String>>,
}

/// Called with the TLS key log text of each pcapng Decryption Secrets Block.
pub type SecretsHook = Box<dyn FnMut(&[u8]) + Send>;

#[derive(Default)]
struct State {
    /// pcap: the one link type and timestamp resolution; pcapng: those of the current section.
    interfaces: Vec<Interface>,
    big_endian: bool,
    pcapng: bool,
    /// A pcap file in the common format (not pcapng, not the "modified" format with its longer
    /// record header): its whole records are read where they lie (see `legacy_records`).
    plain_legacy: bool,
    records: u64,
    warnings: Vec<CaptureWarning>,
    tls_secrets: Option<SecretsHook>,
}

/// Whether the capture at `path` can be read again from its start: a regular file, not standard
/// input (`-`) or a pipe (`<(…)`, a FIFO), whose bytes a first reading takes away.
pub fn rereadable(path: &str) -> bool {
    path != "-" && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

impl CaptureReader {
    /// Opens a file, or stdin for `-`.
    pub fn open(path: &str) -> Result<Self, CaptureError> {
        if path == "-" {
            return Self::from_read("<stdin>", io::stdin());
        }
        let file = File::open(Path::new(path)).map_err(|source| CaptureError::Open {
            path: path.to_string(),
            source,
        })?;
        Self::from_read(path, file)
    }

    /// Reads a capture from `reader`, decompressing it first when it starts with a gzip, zstd
    /// or LZ4 magic number.
    pub fn from_read<R: Read + Send + 'static>(
        name: &str,
        reader: R,
    ) -> Result<Self, CaptureError> {
        let (position, damage) = (Position::default(), Arc::new(OnceLock::new()));
        let (plain, compression) =
            plain_bytes(reader, &position, &damage).map_err(|_| CaptureError::Read {
                path: name.to_string(),
                record: 0,
            })?;
        Self::from_plain(name, plain, position, compression, damage)
    }

    fn from_plain<R: Read + Send + 'static>(
        name: &str,
        mut reader: R,
        position: Position,
        compression: Option<Compression>,
        damage: Arc<OnceLock<String>>,
    ) -> Result<Self, CaptureError> {
        let (prefix, known_magic) =
            read_file_header(&mut reader).map_err(|_| CaptureError::Read {
                path: name.to_string(),
                record: 0,
            })?;
        if !known_magic {
            if let Some(reason) = damage.get() {
                return Err(CaptureError::CompressedHeader {
                    path: name.to_string(),
                    reason: reason.clone(),
                });
            }
            if let (Some(c), false) = (compression, prefix.is_empty()) {
                return Err(CaptureError::NotACaptureInside {
                    path: name.to_string(),
                    compression: c.name(),
                });
            }
        }
        // pcap-parser parses the file header from its first read; hand it the whole header at
        // once, which also makes pipes that deliver a few bytes at a time work.
        let reader = io::Cursor::new(prefix).chain(reader);
        let inner = match pcap_parser::create_reader(INITIAL_BUFFER, reader) {
            Ok(r) => r,
            Err(PcapError::Eof) => {
                return Err(CaptureError::Empty {
                    path: name.to_string(),
                })
            }
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Read {
                    path: name.to_string(),
                    record: 0,
                })
            }
            Err(_) if known_magic => {
                return Err(CaptureError::TruncatedHeader {
                    path: name.to_string(),
                })
            }
            Err(_) => {
                return Err(CaptureError::NotACapture {
                    path: name.to_string(),
                })
            }
        };
        Ok(CaptureReader {
            name: name.to_string(),
            inner,
            state: State::default(),
            position,
            compression,
            damage,
        })
    }

    /// How the file is compressed, if it is.
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// Bytes read from the file itself so far (compressed bytes, for a compressed file), a
    /// little ahead of the records handed out: what progress reports measure against the
    /// file's size. The handle stays valid while the reader is busy in `for_each_packet`.
    pub fn position(&self) -> Position {
        self.position.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands the TLS secrets that pcapng Decryption Secrets Blocks carry (`editcap
    /// --inject-secrets tls,…`) to `hook`, as they are met: before the packets they decrypt.
    pub fn on_tls_secrets(&mut self, hook: SecretsHook) {
        self.state.tls_secrets = Some(hook);
    }

    /// Bytes of capture records consumed so far (after decompression, for a compressed file).
    pub fn bytes_read(&self) -> u64 {
        self.inner.consumed() as u64
    }

    /// Number of packet records read so far.
    pub fn records(&self) -> u64 {
        self.state.records
    }

    /// Non-fatal problems met so far.
    pub fn warnings(&self) -> &[CaptureWarning] {
        &self.state.warnings
    }

    /// Calls `f` for every packet, in file order. Stops early when `f` returns `false`.
    pub fn for_each_packet<F>(&mut self, mut f: F) -> Result<(), CaptureError>
    where
        F: FnMut(&Packet<'_>) -> bool,
    {
        let mut capacity = INITIAL_BUFFER;
        loop {
            let in_place = if self.state.plain_legacy {
                Some(self.state.legacy_records(self.inner.data(), &mut f))
            } else if self.state.pcapng {
                Some(self.state.ng_packets(self.inner.data(), &mut f))
            } else {
                None
            };
            if let Some((used, keep_going)) = in_place {
                self.inner.consume_noshift(used);
                if !keep_going {
                    return Ok(());
                }
            }
            let step = match self.inner.next() {
                Ok((offset, block)) => {
                    let keep_going = self.state.handle_block(block, &mut f);
                    // `consume` moves the unread half of the buffer to its start whenever half
                    // is read, which copied half of every file once more; without it, a refill
                    // moves only the record cut at the buffer's end.
                    self.inner.consume_noshift(offset);
                    if !keep_going {
                        return Ok(());
                    }
                    continue;
                }
                Err(PcapError::Eof) => Step::Done,
                Err(PcapError::Incomplete(_)) => Step::Refill,
                Err(PcapError::UnexpectedEof) => Step::Truncated,
                Err(PcapError::BufferTooSmall) => Step::Grow,
                Err(PcapError::ReadError) => Step::ReadError,
                Err(_) => Step::Malformed,
            };
            match step {
                Step::Done | Step::Truncated => {
                    let after_record = self.state.records;
                    // A damaged compressed stream ends like a clean one; the reason is its own.
                    let warning = match (self.damage.get(), step) {
                        (Some(reason), _) => Some(CaptureWarning::CompressedStreamEnds {
                            after_record,
                            reason: reason.clone(),
                        }),
                        (None, Step::Truncated) => {
                            Some(CaptureWarning::TruncatedRecord { after_record })
                        }
                        (None, _) => None,
                    };
                    self.state.warnings.extend(warning);
                    return Ok(());
                }
                Step::Refill => {
                    if self.inner.refill().is_err() {
                        return Err(CaptureError::Read {
                            path: self.name.clone(),
                            record: self.state.records,
                        });
                    }
                }
                Step::Grow => {
                    let needed = self.pending_record_size().unwrap_or(capacity * 2);
                    if capacity >= MAX_RECORD_BYTES || needed > MAX_RECORD_BYTES {
                        return Err(CaptureError::RecordTooLarge {
                            path: self.name.clone(),
                            record: self.state.records + 1,
                            size: needed,
                            max: MAX_RECORD_BYTES,
                        });
                    }
                    capacity = (capacity * 2).max(needed + 64).min(MAX_RECORD_BYTES);
                    self.inner.grow(capacity);
                    if self.inner.refill().is_err() {
                        return Err(CaptureError::Read {
                            path: self.name.clone(),
                            record: self.state.records,
                        });
                    }
                }
                Step::ReadError => {
                    return Err(CaptureError::Read {
                        path: self.name.clone(),
                        record: self.state.records,
                    })
                }
                Step::Malformed => {
                    return Err(CaptureError::Malformed {
                        path: self.name.clone(),
                        record: self.state.records,
                        offset: self.inner.consumed() as u64,
                    })
                }
            }
        }
    }

    /// Size the next record claims, read from its header, so that a corrupt length is refused
    /// before the buffer grows towards it.
    fn pending_record_size(&self) -> Option<usize> {
        let data = self.inner.data();
        // pcapng blocks carry their total length at offset 4, legacy records their caplen at 8.
        let at = if self.state.pcapng { 4 } else { 8 };
        data.get(at..at + 4)?;
        let len = word_at(data, at, self.state.big_endian);
        Some((len as usize).saturating_add(16))
    }
}

/// The 32-bit word at `at` of a record or block header, in the file's byte order (`at + 4` at
/// most the length of `b`). Inlined: it
/// is read four times a packet, and apart it cost a tenth of the reading.
#[inline(always)]
fn word_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// Bytes of a pcap record's header: seconds, fraction, captured and original lengths.
const LEGACY_RECORD_HEADER: usize = 16;

enum Step {
    Done,
    Refill,
    Truncated,
    Grow,
    ReadError,
    Malformed,
}

impl State {
    /// The records of a plain pcap file wholly in `data`, handed to `f` in place; returns the
    /// bytes they took and whether `f` wants more. pcap-parser reads the rest (a record cut at
    /// the buffer's end, the end of the file, damage) so that all of that has one reading: this
    /// only spares whole records a call through its boxed reader and a block made for each.
    fn legacy_records<F>(&mut self, data: &[u8], f: &mut F) -> (usize, bool)
    where
        F: FnMut(&Packet<'_>) -> bool,
    {
        let big_endian = self.big_endian;
        let word = |b: &[u8], at: usize| word_at(b, at, big_endian);
        let mut used = 0;
        while let Some((head, rest)) = data[used..].split_first_chunk::<LEGACY_RECORD_HEADER>() {
            let caplen = word(head, 8) as usize;
            let Some(packet) = rest.get(..caplen) else {
                break;
            };
            used += LEGACY_RECORD_HEADER + caplen;
            if !self.legacy_packet(word(head, 0), word(head, 4), word(head, 12), packet, f) {
                return (used, false);
            }
        }
        (used, true)
    }

    /// The enhanced packet blocks of a pcapng section wholly in `data` and without options,
    /// handed to `f` in place, as [`Self::legacy_records`] does for pcap; every other block
    /// (and any block pcap-parser would refuse) is left to pcap-parser.
    fn ng_packets<F>(&mut self, data: &[u8], f: &mut F) -> (usize, bool)
    where
        F: FnMut(&Packet<'_>) -> bool,
    {
        const EPB: u32 = 6;
        const HEADER: usize = 28;
        let big_endian = self.big_endian;
        let word = |b: &[u8], at: usize| word_at(b, at, big_endian);
        let mut used = 0;
        while let Some(head) = data.get(used..used + HEADER) {
            let len = word(head, 4) as usize;
            let caplen = word(head, 20) as usize;
            // Block type, then its length: no options (the data padded to four bytes, then the
            // length again), and the length again where it should be.
            let Some(block) = data.get(used..used + len) else {
                break;
            };
            if word(head, 0) != EPB
                || caplen >= (u32::MAX - 4) as usize
                || len != HEADER + caplen.next_multiple_of(4) + 4
                || word(block, len - 4) as usize != len
            {
                break;
            }
            used += len;
            let ts = (u64::from(word(head, 12)) << 32) | u64::from(word(head, 16));
            let packet = &block[HEADER..HEADER + caplen];
            if !self.ng_packet(word(head, 8), ts, word(head, 24), packet, f) {
                return (used, false);
            }
        }
        (used, true)
    }

    /// A pcapng packet of interface `if_id`: hands it to `f`, and says whether `f` wants more.
    fn ng_packet<F>(&mut self, if_id: u32, ts: u64, orig_len: u32, data: &[u8], f: &mut F) -> bool
    where
        F: FnMut(&Packet<'_>) -> bool,
    {
        self.records += 1;
        let Some(iface) = self.interfaces.get(if_id as usize).copied() else {
            unknown_interface(&mut self.warnings, self.records, if_id);
            return true;
        };
        f(&Packet {
            index: self.records,
            ts_ns: ts_to_ns(ts, iface),
            link: iface.link,
            data,
            orig_len,
        })
    }

    /// A pcap record: hands its packet to `f`, and says whether `f` wants more.
    fn legacy_packet<F>(
        &mut self,
        ts_sec: u32,
        ts_frac: u32,
        orig_len: u32,
        data: &[u8],
        f: &mut F,
    ) -> bool
    where
        F: FnMut(&Packet<'_>) -> bool,
    {
        self.records += 1;
        let Some(iface) = self.interfaces.first() else {
            return true;
        };
        let frac_ns = if iface.units_per_sec == 1_000_000 {
            ts_frac as i64 * 1000
        } else {
            ts_frac as i64
        };
        f(&Packet {
            index: self.records,
            ts_ns: ts_sec as i64 * 1_000_000_000 + frac_ns,
            link: iface.link,
            data,
            orig_len,
        })
    }

    fn handle_block<F>(&mut self, block: PcapBlockOwned<'_>, f: &mut F) -> bool
    where
        F: FnMut(&Packet<'_>) -> bool,
    {
        let State {
            interfaces,
            big_endian,
            pcapng,
            plain_legacy,
            records,
            warnings,
            tls_secrets,
        } = self;
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                *big_endian = h.is_bigendian();
                *pcapng = false;
                *plain_legacy = !h.is_modified_format();
                interfaces.clear();
                interfaces.push(Interface {
                    link: LinkType(h.network.0 as u32),
                    units_per_sec: if h.is_nanosecond_precision() {
                        1_000_000_000
                    } else {
                        1_000_000
                    },
                    offset_secs: 0,
                });
                true
            }
            PcapBlockOwned::Legacy(b) => {
                let caplen = (b.caplen as usize).min(b.data.len());
                self.legacy_packet(b.ts_sec, b.ts_usec, b.origlen, &b.data[..caplen], f)
            }
            PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                // Interface ids are per section.
                *big_endian = shb.big_endian();
                *pcapng = true;
                *plain_legacy = false;
                interfaces.clear();
                true
            }
            // Past the limit, packets of the interfaces left out are skipped with a warning.
            PcapBlockOwned::NG(Block::InterfaceDescription(_))
                if interfaces.len() >= MAX_INTERFACES =>
            {
                true
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                interfaces.push(Interface {
                    link: LinkType(idb.linktype.0 as u32),
                    units_per_sec: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                    offset_secs: idb.ts_offset(),
                });
                true
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                self.ng_packet(epb.if_id, raw, epb.origlen, epb.packet_data(), f)
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                *records += 1;
                // SPBs belong to the first interface and carry no timestamp.
                let Some(iface) = interfaces.first().copied() else {
                    unknown_interface(warnings, *records, 0);
                    return true;
                };
                f(&Packet {
                    index: *records,
                    ts_ns: 0,
                    link: iface.link,
                    data: spb.packet_data(),
                    orig_len: spb.origlen,
                })
            }
            // pcap-parser reads an unknown block's type little-endian, whatever the section's
            // byte order: its bytes, read in the section's.
            PcapBlockOwned::NG(Block::Unknown(ub))
                if word_at(&ub.block_type.to_le_bytes(), 0, *big_endian) == OPB_TYPE =>
            {
                match parse_obsolete_packet(ub.data, *big_endian) {
                    Some(opb) => {
                        let if_id = u32::from(opb.interface);
                        self.ng_packet(if_id, opb.ts, opb.orig_len, opb.data, f)
                    }
                    // Counted all the same, as a record without a packet.
                    None => {
                        self.records += 1;
                        true
                    }
                }
            }
            PcapBlockOwned::NG(Block::DecryptionSecrets(dsb))
                if dsb.secrets_type == SecretsType::TlsKeyLog =>
            {
                if let Some(hook) = tls_secrets {
                    let n = (dsb.secrets_len as usize).min(dsb.data.len());
                    hook(&dsb.data[..n]);
                }
                true
            }
            PcapBlockOwned::NG(_) => true,
        }
    }
}

/// pcapng's obsolete Packet Block (type 2), which `pcap-parser` leaves as an unknown block.
const OPB_TYPE: u32 = 2;

struct ObsoletePacket<'a> {
    interface: u16,
    ts: u64,
    orig_len: u32,
    data: &'a [u8],
}

/// `body` is the block without its type and first length field, as `UnknownBlock::data` holds it.
fn parse_obsolete_packet(body: &[u8], big_endian: bool) -> Option<ObsoletePacket<'_>> {
    let u16_at = |o: usize| -> Option<u16> {
        let b: [u8; 2] = body.get(o..o + 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        body.get(o..o + 4)?;
        Some(word_at(body, o, big_endian))
    };
    let interface = u16_at(0)?;
    let ts = ((u32_at(4)? as u64) << 32) | u32_at(8)? as u64;
    let caplen = u32_at(12)? as usize;
    let orig_len = u32_at(16)?;
    let data = body.get(20..20usize.checked_add(caplen)?)?;
    Some(ObsoletePacket {
        interface,
        ts,
        orig_len,
        data,
    })
}

/// Reads the file header (pcap: 24 bytes; pcapng: the whole section header block) or as much of
/// it as there is. Returns the bytes and whether they start with a capture magic number.
fn read_file_header<R: Read>(r: &mut R) -> io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(256);
    read_up_to(r, &mut buf, 8)?;
    if buf.len() < 4 || !is_capture_magic(&buf) {
        return Ok((buf, false));
    }
    let want = if buf[..4] == PCAPNG_MAGIC && buf.len() >= 8 {
        // The block length's byte order is that of the byte-order magic that follows it; read
        // both ways and take the plausible one.
        let le = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        let be = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        le.min(be).clamp(28, 1 << 20)
    } else {
        24
    };
    read_up_to(r, &mut buf, want)?;
    Ok((buf, true))
}

/// The bytes of a capture as its records are read from them: decompressed when they start
/// with a gzip, zstd or LZ4 magic number. `position` counts the bytes taken from `reader`
/// itself; damage ends a compressed stream and is told in `damage`.
pub(crate) fn plain_bytes<R: Read + Send + 'static>(
    mut reader: R,
    position: &Position,
    damage: &Arc<OnceLock<String>>,
) -> io::Result<(Box<dyn Read + Send>, Option<Compression>)> {
    let mut magic = Vec::with_capacity(8);
    read_up_to(&mut reader, &mut magic, 4)?;
    let compression = Compression::detect(&magic);
    let source = io::Cursor::new(magic).chain(reader);
    Ok(match compression {
        None => {
            let counted = Counted {
                inner: source,
                position: position.clone(),
            };
            (Box::new(counted), None)
        }
        Some(c) => (
            c.decompress(source, damage.clone(), position.clone()),
            Some(c),
        ),
    })
}

/// Reads until `buf` holds `want` bytes or the input ends.
pub(super) fn read_up_to<R: Read>(r: &mut R, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    let missing = want.saturating_sub(buf.len()) as u64;
    r.take(missing).read_to_end(buf).map(|_| ())
}

/// The block type of a pcapng file's first block, its Section Header Block (the same in either
/// byte order).
pub(crate) const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

fn is_capture_magic(b: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        PCAPNG_MAGIC,
    ];
    MAGICS.iter().any(|m| m[..] == b[..4])
}

fn ts_to_ns(raw: u64, iface: Interface) -> i64 {
    let units = iface.units_per_sec as u128;
    let secs = raw as u128 / units;
    let frac = raw as u128 % units;
    let ns = secs * 1_000_000_000 + frac * 1_000_000_000 / units;
    i64::try_from(ns)
        .unwrap_or(i64::MAX)
        .saturating_add(iface.offset_secs.saturating_mul(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        let mut b = Vec::new();
        b.extend(kind.to_le_bytes());
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.resize(len as usize - 4, 0);
        b.extend(len.to_le_bytes());
        b
    }

    /// Every packet of a capture read from `reader`, as (index, time, link, bytes, length).
    fn packets_of<R: Read + Send + 'static>(reader: R) -> Vec<(u64, i64, u32, Vec<u8>, u32)> {
        let mut r = CaptureReader::from_read("mem", reader).unwrap();
        let mut out = Vec::new();
        r.for_each_packet(|p| {
            out.push((p.index, p.ts_ns, p.link.0, p.data.to_vec(), p.orig_len));
            true
        })
        .unwrap();
        out
    }

    /// A reader's state for one interface of `link` with nanosecond times (testdata's
    /// capture says so in its magic; the pcapng copies in their interface).
    fn nanosecond_state(link: u32, big_endian: bool) -> State {
        State {
            interfaces: vec![Interface {
                link: LinkType(link),
                units_per_sec: 1_000_000_000,
                offset_secs: 0,
            }],
            big_endian,
            ..State::default()
        }
    }

    /// Gives at most `n` bytes a read, as a pipe may.
    struct Trickle<R>(R, usize);

    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    /// Whole records are read in place and records cut at the buffer's end by pcap-parser:
    /// both readings give the same packets, whichever way the bytes arrive and in either byte
    /// order.
    #[test]
    fn pcap_records_read_in_place_match_pcap_parser() {
        let file = testdata_capture();
        let whole = packets_of(io::Cursor::new(file.clone()));
        assert_eq!(whole.len(), 89);
        for n in [1, 7, 100, 4096] {
            let trickled = packets_of(Trickle(io::Cursor::new(file.clone()), n));
            assert!(trickled == whole, "{n} bytes a read");
        }
        // The same file big-endian: every header field byte-swapped.
        let word = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mut be = Vec::new();
        be.extend(word(&file, 0).to_be_bytes());
        be.extend(u16::from_le_bytes([file[4], file[5]]).to_be_bytes());
        be.extend(u16::from_le_bytes([file[6], file[7]]).to_be_bytes());
        for at in [8, 12, 16, 20] {
            be.extend(word(&file, at).to_be_bytes());
        }
        let mut at = 24;
        while at < file.len() {
            let caplen = word(&file, at + 8) as usize;
            for f in 0..4 {
                be.extend(word(&file, at + 4 * f).to_be_bytes());
            }
            be.extend(&file[at + 16..at + 16 + caplen]);
            at += 16 + caplen;
        }
        assert!(packets_of(io::Cursor::new(be.clone())) == whole);
        assert!(packets_of(Trickle(io::Cursor::new(be.clone()), 7)) == whole);

        // The records themselves, read in place without pcap-parser: all of them, the same.
        for (big_endian, bytes) in [(false, &file), (true, &be)] {
            let mut state = State {
                plain_legacy: true,
                ..nanosecond_state(whole[0].2, big_endian)
            };
            let mut got = Vec::new();
            let (used, more) = state.legacy_records(&bytes[24..], &mut |p: &Packet<'_>| {
                got.push((p.index, p.ts_ns, p.link.0, p.data.to_vec(), p.orig_len));
                true
            });
            assert_eq!((used, more), (bytes.len() - 24, true));
            assert!(got == whole, "big-endian: {big_endian}");
            // A record cut short is left to pcap-parser.
            let (used, _) = state.legacy_records(&bytes[24..bytes.len() - 1], &mut |_| true);
            assert!(used < bytes.len() - 24);
        }
    }

    /// testdata's capture of health checks, as a pcap file.
    fn testdata_capture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/grpc-health.pcap"
        ))
        .unwrap()
    }

    /// `v` in the given byte order.
    fn word_bytes(big_endian: bool, v: u32) -> [u8; 4] {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// A pcapng block of `kind` around `body` (padded to four bytes), in either byte order.
    fn ng_block(big_endian: bool, kind: u32, body: &[u8]) -> Vec<u8> {
        let word = |v: u32| word_bytes(big_endian, v);
        let len = (12 + body.len().next_multiple_of(4)) as u32;
        let mut b = Vec::new();
        b.extend(word(kind));
        b.extend(word(len));
        b.extend(body);
        b.resize(len as usize - 4, 0);
        b.extend(word(len));
        b
    }

    /// testdata's capture as pcapng (nanosecond times), every third packet's block carrying
    /// a comment.
    fn as_pcapng(big_endian: bool, packets: &[(u64, i64, u32, Vec<u8>, u32)]) -> Vec<u8> {
        let word = |v: u32| word_bytes(big_endian, v);
        let half = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut shb = word(0x1A2B_3C4D).to_vec();
        shb.extend(half(1));
        shb.extend(half(0));
        shb.extend([0xff; 8]);
        let mut file = ng_block(big_endian, 0x0A0D_0D0A, &shb);
        // Link type, reserved, snap length; if_tsresol 9 (nanoseconds); end of options.
        let mut idb = half(packets[0].2 as u16).to_vec();
        idb.extend(half(0));
        idb.extend(word(0));
        idb.extend(half(9));
        idb.extend(half(1));
        idb.extend([9, 0, 0, 0]);
        idb.extend([0; 4]);
        file.extend(ng_block(big_endian, 1, &idb));
        for (i, (_, ts, _, data, orig_len)) in packets.iter().enumerate() {
            let ts = *ts as u64;
            let mut epb = word(0).to_vec();
            epb.extend(word((ts >> 32) as u32));
            epb.extend(word(ts as u32));
            epb.extend(word(data.len() as u32));
            epb.extend(word(*orig_len));
            epb.extend(data);
            if i % 3 == 0 {
                epb.resize(epb.len().next_multiple_of(4), 0);
                epb.extend(half(1));
                epb.extend(half(5));
                epb.extend(b"hello\0\0\0");
                epb.extend([0; 4]);
            }
            file.extend(ng_block(big_endian, 6, &epb));
        }
        file
    }

    /// Where each block of a pcapng file starts: the section header, the interface, then the
    /// packets (and the file's end).
    fn block_starts(ng: &[u8], big_endian: bool) -> Vec<usize> {
        let mut starts = vec![0];
        while let Some(&at) = starts.last().filter(|&&at| at < ng.len()) {
            starts.push(at + word_at(ng, at + 4, big_endian) as usize);
        }
        starts
    }

    /// pcapng's obsolete packet blocks, which pcap-parser leaves unknown, give their packets as
    /// enhanced ones do; one too short to read is counted as a record without a packet.
    #[test]
    fn obsolete_packet_blocks_give_their_packets() {
        let whole = packets_of(io::Cursor::new(testdata_capture()));
        for big_endian in [false, true] {
            let word = |v: u32| word_bytes(big_endian, v);
            // The section header and the interface of a pcapng copy.
            let ng = as_pcapng(big_endian, &whole[..1]);
            let mut opbs = ng[..block_starts(&ng, big_endian)[2]].to_vec();
            opbs.extend(ng_block(big_endian, OPB_TYPE, &[0; 6]));
            for (_, ts, _, data, orig_len) in &whole {
                // Interface 0 and no drops in one word, then as an enhanced packet block.
                let mut opb = word(0).to_vec();
                for v in [
                    (*ts as u64 >> 32) as u32,
                    *ts as u32,
                    data.len() as u32,
                    *orig_len,
                ] {
                    opb.extend(word(v));
                }
                opb.extend(data);
                opbs.extend(ng_block(big_endian, OPB_TYPE, &opb));
            }
            let got = packets_of(io::Cursor::new(opbs));
            // Numbered after the record that had none.
            let expected: Vec<_> = whole
                .iter()
                .map(|(i, ts, link, data, len)| (i + 1, *ts, *link, data.clone(), *len))
                .collect();
            assert!(got == expected, "big-endian: {big_endian}");
        }
    }

    /// Enhanced packet blocks without options are read in place, the rest by pcap-parser:
    /// both readings give the same packets, whichever way the bytes arrive.
    #[test]
    fn pcapng_blocks_read_in_place_match_pcap_parser() {
        let whole = packets_of(io::Cursor::new(testdata_capture()));
        for big_endian in [false, true] {
            let ng = as_pcapng(big_endian, &whole);
            assert!(packets_of(io::Cursor::new(ng.clone())) == whole);
            for n in [1, 7, 100] {
                let trickled = packets_of(Trickle(io::Cursor::new(ng.clone()), n));
                assert!(trickled == whole, "{n} bytes a read");
            }
            let starts = block_starts(&ng, big_endian);
            let (first_epb, second) = (starts[2], starts[3]);
            let mut state = State {
                pcapng: true,
                ..nanosecond_state(whole[0].2, big_endian)
            };
            // The first block has a comment: left to pcap-parser.
            assert_eq!(state.ng_packets(&ng[first_epb..], &mut |_| true), (0, true));
            let mut got = Vec::new();
            let (used, more) = state.ng_packets(&ng[second..], &mut |p: &Packet<'_>| {
                got.push((p.ts_ns, p.data.to_vec(), p.orig_len));
                true
            });
            assert!(more && used > 0);
            // Packets 2 and 3 (indices 1 and 2) have no options; packet 4 does.
            let expected: Vec<_> = whole[1..3]
                .iter()
                .map(|(_, ts, _, data, len)| (*ts, data.clone(), *len))
                .collect();
            assert!(got == expected, "big-endian: {big_endian}");
        }
    }

    /// A pcapng file whose packets all name an interface never described: the first are
    /// listed, the rest counted, so the warnings do not grow with the file.
    #[test]
    fn records_of_undeclared_interfaces_are_counted_past_a_few() {
        let mut file = block(
            0x0A0D_0D0A,
            &[
                0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        file.extend(block(1, &[1, 0, 0, 0, 0xff, 0xff, 0, 0]));
        for _ in 0..50 {
            let mut epb = Vec::new();
            for v in [7u32, 0, 0, 4, 4] {
                epb.extend(v.to_le_bytes());
            }
            epb.extend([1, 2, 3, 4]);
            file.extend(block(6, &epb));
        }
        let mut r = CaptureReader::from_read("mem", std::io::Cursor::new(file)).unwrap();
        let mut packets = 0;
        r.for_each_packet(|_| {
            packets += 1;
            true
        })
        .unwrap();
        assert_eq!(packets, 0);
        let w = r.warnings();
        assert_eq!(w.len(), MAX_UNKNOWN_INTERFACE_WARNINGS + 1, "{w:?}");
        assert_eq!(
            w.last(),
            Some(&CaptureWarning::MoreUnknownInterfaces {
                count: 30,
                last_record: 50
            })
        );
    }
}
