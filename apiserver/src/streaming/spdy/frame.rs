//! SPDY/3.1 framing, as far as a port-forward server needs it: reading every frame type,
//! writing DATA, SYN_REPLY, RST_STREAM, PING and GOAWAY, and the name/value header blocks,
//! compressed with zlib and the protocol's dictionary in one stream per direction.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::dictionary::header_dictionary;

/// The SPDY version spoken.
const VERSION: u16 = 3;
/// FLAG_FIN on DATA, SYN_STREAM and SYN_REPLY frames: the sender's side of the stream ends.
pub const FLAG_FIN: u8 = 0x01;
/// The largest frame accepted from a client; port-forward clients send far smaller ones.
const MAX_FRAME: usize = 1 << 24;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status: PROTOCOL_ERROR.
pub const RST_PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: REFUSED_STREAM.
pub const RST_REFUSED_STREAM: u32 = 3;

/// Errors reading frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or ended mid-frame.
    #[error("reading a SPDY frame: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

fn protocol(message: impl Into<String>) -> FrameError {
    FrameError::Protocol(message.into())
}

/// Header names to values (a name may carry several values, NUL-separated on the wire).
pub type Headers = BTreeMap<String, Vec<String>>;

/// A frame, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes on a stream.
    Data {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN and others.
        flags: u8,
        /// The payload.
        data: Bytes,
    },
    /// The peer opens a stream.
    SynStream {
        /// The new stream.
        stream_id: u32,
        /// FLAG_FIN and FLAG_UNIDIRECTIONAL.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// The peer ends a stream abruptly.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why.
        status: u32,
    },
    /// A ping (odd ids from the client, to be echoed).
    Ping {
        /// The ping's id.
        id: u32,
    },
    /// The peer closes the session.
    GoAway,
    /// Frames the server takes note of and otherwise ignores (SYN_REPLY, SETTINGS,
    /// HEADERS, WINDOW_UPDATE, unknown types).
    Ignored,
}

/// Reads frames from a byte stream, inflating header blocks.
pub struct FrameReader<R> {
    reader: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames from `reader`.
    pub fn new(reader: R) -> Self {
        FrameReader {
            reader,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `None` at a clean end of the connection between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        let mut head = [0u8; 8];
        match self.reader.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.reader.read_exact(&mut head[1..]).await?;
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if length > MAX_FRAME {
            return Err(protocol(format!("frame of {length} bytes is too large")));
        }
        let mut payload = vec![0u8; length];
        self.reader.read_exact(&mut payload).await?;
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: Bytes::from(payload),
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(protocol(format!("unsupported SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        self.control(kind, flags, &payload).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Frame, FrameError> {
        let word = |at: usize| -> Result<u32, FrameError> {
            p.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| protocol("control frame too short"))
        };
        match kind {
            SYN_STREAM => {
                let stream_id = word(0)? & 0x7fff_ffff;
                let block = p
                    .get(10..)
                    .ok_or_else(|| protocol("SYN_STREAM too short"))?;
                let headers = self.headers(block)?;
                Ok(Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                })
            }
            SYN_REPLY | HEADERS => {
                // Header blocks share one compression stream: inflate to stay in step.
                let block = p
                    .get(4..)
                    .ok_or_else(|| protocol("header frame too short"))?;
                self.headers(block)?;
                Ok(Frame::Ignored)
            }
            RST_STREAM => Ok(Frame::RstStream {
                stream_id: word(0)? & 0x7fff_ffff,
                status: word(4)?,
            }),
            PING => Ok(Frame::Ping { id: word(0)? }),
            GOAWAY => Ok(Frame::GoAway),
            SETTINGS | WINDOW_UPDATE => Ok(Frame::Ignored),
            _ => Ok(Frame::Ignored),
        }
    }

    /// Inflates and parses one header block.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let raw = inflate(&mut self.inflate, compressed)?;
        parse_header_block(&raw)
    }
}

/// Inflates `input` with a sync flush, setting the dictionary when the stream asks for it.
fn inflate(z: &mut Decompress, input: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(input.len() * 4 + 64);
    let mut consumed = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(256));
        }
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let mut set_dictionary = false;
        match z.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync) {
            Ok(Status::StreamEnd) => return Ok(out),
            Ok(_) => {}
            Err(e) if e.needs_dictionary().is_some() => {
                z.set_dictionary(header_dictionary())
                    .map_err(|e| protocol(format!("setting the header dictionary: {e}")))?;
                set_dictionary = true;
            }
            Err(e) => return Err(protocol(format!("inflating a header block: {e}"))),
        }
        consumed += usize::try_from(z.total_in() - in_before).unwrap_or(usize::MAX);
        if consumed >= input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        let progressed = z.total_in() != in_before || z.total_out() != out_before;
        if !progressed && !set_dictionary {
            return Err(protocol("header block does not inflate"));
        }
    }
}

/// Parses an inflated name/value block: a count, then length-prefixed names and values.
fn parse_header_block(raw: &[u8]) -> Result<Headers, FrameError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], FrameError> {
        let s = raw
            .get(at..at + n)
            .ok_or_else(|| protocol("header block too short"))?;
        at += n;
        Ok(s)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| protocol("count"))?);
    let mut headers = Headers::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| protocol("length"))?);
        let name = String::from_utf8_lossy(take(len as usize)?).to_ascii_lowercase();
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| protocol("length"))?);
        let value = take(len as usize)?;
        let values = value
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        headers.entry(name).or_default().extend(values);
    }
    Ok(headers)
}

/// Writes frames; owns the deflate stream, so header frames must be written in the order
/// they are built.
pub struct FrameWriter {
    deflate: Compress,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    /// A writer with a fresh compression stream.
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::best(), true);
        // Only fails for a compressor that already started; this one has not.
        let _ = deflate.set_dictionary(header_dictionary());
        FrameWriter { deflate }
    }

    /// A SYN_REPLY with no headers.
    pub fn syn_reply(&mut self, stream_id: u32) -> Result<Bytes, FrameError> {
        let block = self.header_block(&[])?;
        let mut payload = BytesMut::with_capacity(4 + block.len());
        payload.put_u32(stream_id & 0x7fff_ffff);
        payload.put_slice(&block);
        Ok(control(SYN_REPLY, 0, &payload))
    }

    fn header_block(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, FrameError> {
        let mut raw = BytesMut::new();
        raw.put_u32(u32::try_from(headers.len()).unwrap_or(u32::MAX));
        for (k, v) in headers {
            raw.put_u32(u32::try_from(k.len()).unwrap_or(u32::MAX));
            raw.put_slice(k.as_bytes());
            raw.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| protocol(format!("deflating a header block: {e}")))?;
            consumed += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            // Done once everything is in and the flush left room (nothing pending).
            if consumed >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// A DATA frame.
pub fn data(stream_id: u32, flags: u8, payload: &[u8]) -> Bytes {
    let mut f = BytesMut::with_capacity(8 + payload.len());
    f.put_u32(stream_id & 0x7fff_ffff);
    f.put_u8(flags);
    put_u24(&mut f, payload.len());
    f.put_slice(payload);
    f.freeze()
}

/// A RST_STREAM frame.
pub fn rst_stream(stream_id: u32, status: u32) -> Bytes {
    let mut p = BytesMut::with_capacity(8);
    p.put_u32(stream_id & 0x7fff_ffff);
    p.put_u32(status);
    control(RST_STREAM, 0, &p)
}

/// A PING frame (the answer to a client's ping carries its id).
pub fn ping(id: u32) -> Bytes {
    control(PING, 0, &id.to_be_bytes())
}

/// A GOAWAY frame, status OK.
pub fn goaway(last_good_stream_id: u32) -> Bytes {
    let mut p = BytesMut::with_capacity(8);
    p.put_u32(last_good_stream_id & 0x7fff_ffff);
    p.put_u32(0);
    control(GOAWAY, 0, &p)
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut f = BytesMut::with_capacity(8 + payload.len());
    f.put_u16(0x8000 | VERSION);
    f.put_u16(kind);
    f.put_u8(flags);
    put_u24(&mut f, payload.len());
    f.put_slice(payload);
    f.freeze()
}

fn put_u24(f: &mut BytesMut, n: usize) {
    let n = u32::try_from(n).unwrap_or(u32::MAX).min(0xff_ffff);
    f.put_slice(&n.to_be_bytes()[1..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN_STREAM as a client builds it, with the same compression scheme.
    fn syn_stream(w: &mut FrameWriter, stream_id: u32, headers: &[(&str, &str)]) -> Bytes {
        let block = w.header_block(headers).expect("deflate");
        let mut p = BytesMut::new();
        p.put_u32(stream_id);
        p.put_u32(0);
        p.put_u16(0);
        p.put_slice(&block);
        control(SYN_STREAM, 0, &p)
    }

    #[tokio::test]
    async fn frames_round_trip_with_one_compression_stream() {
        let mut client = FrameWriter::new();
        let mut wire = Vec::new();
        wire.extend_from_slice(&syn_stream(
            &mut client,
            1,
            &[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ],
        ));
        wire.extend_from_slice(&syn_stream(
            &mut client,
            3,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
        ));
        wire.extend_from_slice(&data(3, FLAG_FIN, b"hello"));
        wire.extend_from_slice(&ping(7));
        let mut r = FrameReader::new(&wire[..]);
        let Some(Frame::SynStream {
            stream_id, headers, ..
        }) = r.next().await.expect("frame")
        else {
            panic!("expected SYN_STREAM");
        };
        assert_eq!(stream_id, 1);
        assert_eq!(headers["streamtype"], ["error"]);
        let Some(Frame::SynStream { headers, .. }) = r.next().await.expect("frame") else {
            panic!("expected SYN_STREAM");
        };
        assert_eq!(headers["streamtype"], ["data"]);
        assert_eq!(headers["port"], ["8080"]);
        assert_eq!(
            r.next().await.expect("frame"),
            Some(Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello")
            })
        );
        assert_eq!(r.next().await.expect("frame"), Some(Frame::Ping { id: 7 }));
        assert_eq!(r.next().await.expect("end"), None);
    }

    #[tokio::test]
    async fn syn_replies_inflate_on_the_other_side() {
        let mut server = FrameWriter::new();
        let mut wire = Vec::new();
        wire.extend_from_slice(&server.syn_reply(1).expect("reply"));
        wire.extend_from_slice(&server.syn_reply(3).expect("reply"));
        let mut r = FrameReader::new(&wire[..]);
        assert_eq!(r.next().await.expect("frame"), Some(Frame::Ignored));
        assert_eq!(r.next().await.expect("frame"), Some(Frame::Ignored));
    }
}
