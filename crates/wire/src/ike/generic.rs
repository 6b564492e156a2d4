//! What IKEv2 kept of ISAKMP's encoding, parsed and written alike for both versions: the
//! generic payload header (RFC 7296 §3.2, RFC 2408 §3.2), data attributes (RFC 7296 §3.3.5,
//! RFC 2408 §3.3), and a bounds-checked reader for payload bodies. Each version reports what
//! goes wrong in its own error type, through [`Failure`].

use core::marker::PhantomData;

use super::PAYLOAD_HEADER_LEN;

/// How a version's error type names the failures found here.
pub(crate) trait Failure {
    /// The input ends before a length field says it should.
    fn truncated() -> Self;
    /// A length field is shorter than its own header.
    fn bad_length() -> Self;
    /// A payload of this type is malformed inside.
    fn bad_payload(kind: u8) -> Self;
}

/// The generic payload header at the start of `rest`: the next-payload field, the flags octet
/// and the payload's whole length, which lies within `rest`.
pub(crate) fn payload_header<E: Failure>(rest: &[u8]) -> Result<(u8, u8, usize), E> {
    if rest.len() < PAYLOAD_HEADER_LEN {
        return Err(E::truncated());
    }
    let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    if len < PAYLOAD_HEADER_LEN {
        return Err(E::bad_length());
    }
    if len > rest.len() {
        return Err(E::truncated());
    }
    Ok((rest[0], rest[1], len))
}

/// Appends `payloads` as a chain, each behind a generic header naming the next one's
/// `kind`; returns the type of the first (NONE, 0, if there is none).
pub(crate) fn emit_chain<P>(
    payloads: &[P],
    kind: impl Fn(&P) -> u8,
    emit_body: impl Fn(&P, &mut Vec<u8>),
    out: &mut Vec<u8>,
) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(0, &kind);
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        emit_body(p, out);
        set_payload_len(out, start);
    }
    payloads.first().map_or(0, kind)
}

/// Fills in the 16-bit length at `start + 2` of a payload that runs to the end of `out`.
pub(crate) fn set_payload_len(out: &mut [u8], start: usize) {
    // Payload lengths are bounded by what we emit ourselves (a few KiB at most).
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The attribute format bit: set for a two-byte value in place of the length (TV, "basic").
const AF: u16 = 0x8000;

/// A data attribute's value as encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttributeValue<'a> {
    /// Two bytes in place of the length (IKEv2's TV, ISAKMP's basic).
    Short(u16),
    /// Length-prefixed bytes (IKEv2's TLV, ISAKMP's variable).
    Long(&'a [u8]),
}

/// Appends a data attribute; a long value is cut at 65535 bytes, the most its length holds.
pub(crate) fn emit_attribute(kind: u16, value: AttributeValue<'_>, out: &mut Vec<u8>) {
    match value {
        AttributeValue::Short(v) => {
            out.extend_from_slice(&(kind | AF).to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        AttributeValue::Long(v) => {
            out.extend_from_slice(&(kind & !AF).to_be_bytes());
            let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&v[..usize::from(len)]);
        }
    }
}

/// Bounds-checked reader for the body of a payload of type `kind`; every shortfall is that
/// payload's [`Failure::bad_payload`].
#[derive(Debug)]
pub(crate) struct Reader<'a, E> {
    buf: &'a [u8],
    kind: u8,
    error: PhantomData<E>,
}

impl<'a, E: Failure> Reader<'a, E> {
    pub(crate) const fn new(kind: u8, buf: &'a [u8]) -> Self {
        Self {
            buf,
            kind,
            error: PhantomData,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        if n > self.buf.len() {
            return Err(self.bad());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, E> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, E> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, E> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    pub(crate) const fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn bad(&self) -> E {
        E::bad_payload(self.kind)
    }

    /// A nested payload (a proposal in an SA, a transform in a proposal): the first octet of
    /// its generic header and its body.
    pub(crate) fn sub_payload(&mut self) -> Result<(u8, &'a [u8]), E> {
        let (first, _, len) = payload_header::<E>(self.buf).map_err(|_| self.bad())?;
        let whole = self.take(len)?;
        Ok((first, &whole[PAYLOAD_HEADER_LEN..]))
    }

    /// A data attribute: its type (without the format bit) and its value.
    pub(crate) fn attribute(&mut self) -> Result<(u16, AttributeValue<'a>), E> {
        let head = self.u16()?;
        let v = self.u16()?;
        let value = if head & AF != 0 {
            AttributeValue::Short(v)
        } else {
            AttributeValue::Long(self.take(usize::from(v))?)
        };
        Ok((head & !AF, value))
    }
}
