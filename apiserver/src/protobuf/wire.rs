//! The protobuf wire format: a message is a sequence of (field number, wire type, value)
//! records. This module only splits bytes into records; what a record means is the schema's
//! business ([`super::message`]).

use std::fmt;

/// One record's value, as the wire carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WireValue<'a> {
    /// Wire type 0: `int32`, `int64`, `uint*`, `sint*`, `bool`.
    Varint(u64),
    /// Wire type 1: `fixed64`, `sfixed64`, `double`.
    Fixed64(u64),
    /// Wire type 2: `string`, `bytes`, an embedded message, a map entry or a packed list.
    Bytes(&'a [u8]),
    /// Wire type 5: `fixed32`, `sfixed32`, `float`.
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// Bytes that are not a well-formed protobuf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// Offset of the bad record in the message's bytes.
    pub offset: usize,
    /// What is wrong there.
    pub problem: WireProblem,
}

/// What a [`WireError`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireProblem {
    /// The data ends inside a record.
    Truncated,
    /// A varint longer than 10 bytes.
    VarintTooLong,
    /// Field number 0, which no message has.
    FieldZero,
    /// A wire type no Kubernetes message uses (3 and 4 are proto2 groups; 6 and 7 are none).
    UnsupportedWireType(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            WireProblem::Truncated => write!(
                f,
                "unexpected end of data in the record at byte {}",
                self.offset
            ),
            WireProblem::VarintTooLong => {
                write!(f, "a varint longer than 10 bytes at byte {}", self.offset)
            }
            WireProblem::FieldZero => write!(f, "field number 0 at byte {}", self.offset),
            WireProblem::UnsupportedWireType(t) => {
                write!(f, "unsupported wire type {t} at byte {}", self.offset)
            }
        }
    }
}

impl std::error::Error for WireError {}

/// The records of one message, in order.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Records<'a> {
    /// The records of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Records { buf, pos: 0 }
    }

    fn next_record(&mut self) -> Result<(u32, WireValue<'a>), WireError> {
        let start = self.pos;
        let err = |problem| WireError {
            offset: start,
            problem,
        };
        let key = read_varint(self.buf, &mut self.pos).map_err(err)?;
        let number = u32::try_from(key >> 3).map_err(|_| err(WireProblem::Truncated))?;
        if number == 0 {
            return Err(err(WireProblem::FieldZero));
        }
        let value = match (key & 7) as u8 {
            0 => WireValue::Varint(read_varint(self.buf, &mut self.pos).map_err(err)?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.take::<8>().map_err(err)?)),
            2 => {
                let len = read_varint(self.buf, &mut self.pos).map_err(err)?;
                let len = usize::try_from(len).map_err(|_| err(WireProblem::Truncated))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|&end| end <= self.buf.len())
                    .ok_or_else(|| err(WireProblem::Truncated))?;
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                WireValue::Bytes(bytes)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.take::<4>().map_err(err)?)),
            other => return Err(err(WireProblem::UnsupportedWireType(other))),
        };
        Ok((number, value))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireProblem> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or(WireProblem::Truncated)?;
        self.pos += N;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u32, WireValue<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let record = self.next_record();
        if record.is_err() {
            // A bad record ends the message: nothing after it can be framed.
            self.pos = self.buf.len();
        }
        Some(record)
    }
}

/// Reads a base-128 varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireProblem> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos).ok_or(WireProblem::Truncated)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireProblem::VarintTooLong)
}

/// The values of a packed repeated field of fixed or varint scalars, as records of the
/// field's scalar wire type.
pub fn packed(buf: &[u8], element: PackedElement) -> Result<Vec<WireValue<'_>>, WireError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let err = |problem| WireError {
            offset: start,
            problem,
        };
        let value = match element {
            PackedElement::Varint => WireValue::Varint(read_varint(buf, &mut pos).map_err(err)?),
            PackedElement::Fixed32 => {
                let b = buf
                    .get(pos..pos + 4)
                    .ok_or_else(|| err(WireProblem::Truncated))?;
                pos += 4;
                WireValue::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            PackedElement::Fixed64 => {
                let b = buf
                    .get(pos..pos + 8)
                    .ok_or_else(|| err(WireProblem::Truncated))?;
                pos += 8;
                let mut a = [0; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
        };
        out.push(value);
    }
    Ok(out)
}

/// The wire type of one element of a packed list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedElement {
    /// Varint elements.
    Varint,
    /// 4-byte elements.
    Fixed32,
    /// 8-byte elements.
    Fixed64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_each_wire_type_are_split_in_order() {
        // field 1 varint 150; field 2 "hi"; field 3 fixed64 1; field 4 fixed32 2.
        let buf = [
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0,
        ];
        let records: Vec<_> = Records::new(&buf)
            .collect::<Result<_, _>>()
            .expect("records");
        assert_eq!(
            records,
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Bytes(b"hi")),
                (3, WireValue::Fixed64(1)),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn a_length_past_the_end_is_truncated_not_a_panic() {
        let buf = [0x12, 5, b'a'];
        let err = Records::new(&buf).next().expect("a record").unwrap_err();
        assert_eq!(err.problem, WireProblem::Truncated);
        assert_eq!(err.offset, 0);
        let huge = [
            0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(Records::new(&huge).next().expect("a record").is_err());
    }

    #[test]
    fn groups_and_field_zero_are_refused() {
        let group = [0x0b];
        assert_eq!(
            Records::new(&group)
                .next()
                .expect("a record")
                .unwrap_err()
                .problem,
            WireProblem::UnsupportedWireType(3)
        );
        let zero = [0x00, 0x01];
        assert_eq!(
            Records::new(&zero)
                .next()
                .expect("a record")
                .unwrap_err()
                .problem,
            WireProblem::FieldZero
        );
    }

    #[test]
    fn negative_int32_uses_ten_bytes() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let mut pos = 0;
        assert_eq!(read_varint(&buf, &mut pos).map(|v| v as i64), Ok(-1));
        let too_long = [0xff; 11];
        let mut pos = 0;
        assert_eq!(
            read_varint(&too_long, &mut pos),
            Err(WireProblem::VarintTooLong)
        );
    }

    #[test]
    fn packed_varints_are_unpacked() {
        let values = packed(&[1, 0x96, 0x01, 3], PackedElement::Varint).expect("packed");
        assert_eq!(
            values,
            vec![
                WireValue::Varint(1),
                WireValue::Varint(150),
                WireValue::Varint(3)
            ]
        );
        assert!(packed(&[1, 2, 3], PackedElement::Fixed32).is_err());
    }
}
