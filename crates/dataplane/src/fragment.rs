//! Fragmentation, inner and outer.
//!
//! An inner IPv4 packet without DF that does not fit the tunnel is split into
//! IPv4 fragments (RFC 791 §3.2), each carried in its own outer packet, the
//! way Linux fragments a forwarded packet to the ip6tnl device MTU; the far
//! end passes them on and the destination reassembles them.
//!
//! An inner IPv6 packet is never refused below 1280 bytes, so when the path
//! reports less room than that, the outer packet itself is split with an IPv6
//! Fragment header (RFC 2473 §7.1) and the far end's kernel reassembles it
//! before the tunnel sees it.

use wire::{Ipv4Packet, Ipv6Packet, Ipv6Repr, ip_proto, ipv4, ipv6, ipv6_ext};

use crate::encap::{Framing, V6Ends};
use crate::ident::Idents;
use crate::inner::Family;
use crate::{Batch, DropReason, EncapLimit};

/// The largest IPv4 header: IHL is four bits of 32-bit words.
const MAX_HEADER_LEN: usize = 60;

/// Option types with the "copied" flag set go into every fragment; all others
/// only into the first (RFC 791 §3.1, "Options").
const COPIED: u8 = 0x80;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;

/// The header of non-first fragments: the fixed part plus the copied options,
/// padded with End of Option List to a multiple of four bytes.
fn later_header(header: &[u8]) -> Result<([u8; MAX_HEADER_LEN], usize), DropReason> {
    let mut out = [0u8; MAX_HEADER_LEN];
    out[..ipv4::HEADER_LEN].copy_from_slice(&header[..ipv4::HEADER_LEN]);
    let mut len = ipv4::HEADER_LEN;
    let mut at = ipv4::HEADER_LEN;
    while at < header.len() {
        match header[at] {
            OPT_END => break,
            OPT_NOP => at += 1,
            kind => {
                let opt_len = usize::from(*header.get(at + 1).ok_or(DropReason::Malformed)?);
                if opt_len < 2 || at + opt_len > header.len() {
                    return Err(DropReason::Malformed);
                }
                if kind & COPIED != 0 {
                    out[len..len + opt_len].copy_from_slice(&header[at..at + opt_len]);
                    len += opt_len;
                }
                at += opt_len;
            }
        }
    }
    // Padding bytes are already zero, which is End of Option List.
    let len = len.next_multiple_of(4);
    let mut view = Ipv4Packet::new_unchecked(&mut out[..len]);
    view.set_header_len(len);
    Ok((out, len))
}

/// Splits `packet` (a valid IPv4 packet without DF, cut to its total length)
/// into fragments of at most `mtu` bytes, each encapsulated on the path
/// `framing` describes into `out`. Returns how many outer packets were
/// appended; on error nothing is.
pub(crate) fn fragment_into(
    framing: &Framing,
    packet: &[u8],
    mtu: u16,
    idents: &mut Idents,
    out: &mut Batch,
) -> Result<usize, DropReason> {
    let view = Ipv4Packet::new_unchecked(packet);
    let first_header = view.header();
    let payload = view.payload();
    let base_offset = usize::from(view.frag_offset());
    let more_after = view.more_frags();
    let traffic_class = view.dscp_ecn();
    let (later, later_len) = later_header(first_header)?;
    let later_header = &later[..later_len];
    let mtu = usize::from(mtu);
    let outer_len = framing.overhead();
    let destination = framing.destination();

    let mut sent = 0;
    let mut done = 0;
    while done < payload.len() || sent == 0 {
        let header = if done == 0 {
            first_header
        } else {
            later_header
        };
        // Every fragment but the last carries a multiple of 8 bytes, since the
        // offset field counts 8-byte units.
        let room = mtu.saturating_sub(header.len()) / 8 * 8;
        let offset = base_offset + done;
        if room == 0 || offset > usize::from(u16::MAX) / 8 * 8 {
            out.pop(sent);
            return Err(if room == 0 {
                DropReason::TooBig
            } else {
                DropReason::Malformed
            });
        }
        let chunk = room.min(payload.len() - done);
        let last = done + chunk == payload.len();
        let fragment_len = header.len() + chunk;

        let buf = out.push(destination, outer_len + fragment_len);
        // The packet had no DF, and neither has any piece of it.
        framing.emit(
            Family::V4.protocol(),
            traffic_class,
            fragment_len,
            false,
            idents,
            buf,
        );
        let fragment = &mut buf[outer_len..];
        fragment[..header.len()].copy_from_slice(header);
        fragment[header.len()..].copy_from_slice(&payload[done..done + chunk]);
        let mut view = Ipv4Packet::new_unchecked(fragment);
        // Fits: fragment_len <= mtu <= u16::MAX, offset checked above.
        view.set_total_len(fragment_len as u16);
        view.set_frag_offset(offset as u16);
        view.set_more_frags(!last || more_after);
        view.fill_checksum();

        sent += 1;
        done += chunk;
        if last {
            break;
        }
    }
    Ok(sent)
}

/// Encapsulates `inner` as usual, then splits the outer packet so that none
/// is longer than `link_mtu`: the fixed header stays in front of each piece,
/// followed by a Fragment header; the encap-limit option, if any, is meant
/// for the far end and travels in the first piece (RFC 8200 §4.5). Returns how
/// many outer packets were appended.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fragment_outer(
    framing: &Framing,
    ends: &V6Ends,
    inner_protocol: u8,
    inner_traffic_class: u8,
    inner: &[u8],
    link_mtu: u16,
    ident: u32,
    out: &mut Batch,
) -> usize {
    // The fragmentable part: [Destination Options] + inner packet.
    let mut option = [0u8; ipv6_ext::ENCAP_LIMIT_HEADER_LEN];
    let (first_header, option) = match ends.encap_limit {
        EncapLimit::None => (inner_protocol, &option[..0]),
        EncapLimit::Limit(limit) => {
            // Cannot fail: the buffer is exactly the header's length.
            let _ = ipv6_ext::emit_encap_limit(inner_protocol, limit, &mut option);
            (ip_proto::DSTOPTS, &option[..])
        }
    };
    let total = option.len() + inner.len();
    let piece_header = ipv6::HEADER_LEN + ipv6_ext::FRAGMENT_HEADER_LEN;
    // At least 1280 - 48: link MTUs below 1280 were raised when learnt.
    let room = (usize::from(link_mtu) - piece_header) / 8 * 8;
    let traffic_class = framing.traffic_class(inner_traffic_class);
    let destination = framing.destination();

    let mut sent = 0;
    let mut done = 0;
    while done < total {
        let chunk = room.min(total - done);
        let last = done + chunk == total;
        let buf = out.push(destination, piece_header + chunk);
        Ipv6Repr {
            src_addr: ends.local,
            dst_addr: ends.remote,
            next_header: ip_proto::FRAGMENT,
            payload_len: ipv6_ext::FRAGMENT_HEADER_LEN + chunk,
            hop_limit: framing.hop_limit,
            traffic_class,
            flow_label: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut buf[..ipv6::HEADER_LEN]));
        // Offsets fit: total <= 8 + 65535 and room is a multiple of 8.
        let offset_and_more = (done as u16) | u16::from(!last);
        buf[ipv6::HEADER_LEN..piece_header].copy_from_slice(&{
            let mut header = [0u8; ipv6_ext::FRAGMENT_HEADER_LEN];
            header[0] = first_header;
            header[2..4].copy_from_slice(&offset_and_more.to_be_bytes());
            header[4..8].copy_from_slice(&ident.to_be_bytes());
            header
        });
        // Copy [done, done + chunk) of option ++ inner.
        let body = &mut buf[piece_header..];
        let option_start = done.min(option.len());
        let from_option = (option.len() - option_start).min(chunk);
        body[..from_option].copy_from_slice(&option[option_start..option_start + from_option]);
        let inner_start = done + from_option - option.len();
        body[from_option..].copy_from_slice(&inner[inner_start..inner_start + chunk - from_option]);
        sent += 1;
        done += chunk;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn later_header_keeps_only_copied_options() {
        // IHL 9: Record Route (7, not copied, 11 bytes), NOP, Security (130,
        // copied, 11 bytes), End, padding.
        let mut header = [0u8; 36];
        header[..20].copy_from_slice(&hex!(
            "49 00 00 24 00 01 00 00 40 11 00 00 c6 33 64 01 cb 00 71 01"
        ));
        header[20..31].copy_from_slice(&hex!("07 0b 04 00 00 00 00 00 00 00 00"));
        header[31] = OPT_NOP;
        // The Security option (type 130) only fits partly before the header
        // ends, so use Stream ID (136, copied, 4 bytes) instead.
        header[32..36].copy_from_slice(&hex!("88 04 ab cd"));
        let (later, len) = later_header(&header).unwrap();
        assert_eq!(len, 24);
        assert_eq!(later[0], 0x46);
        assert_eq!(&later[20..24], &hex!("88 04 ab cd"));
        assert_eq!(&later[1..20], &header[1..20]);
    }

    #[test]
    fn later_header_pads_to_words() {
        let mut header = [0u8; 24];
        header[..20].copy_from_slice(&hex!(
            "46 00 00 18 00 01 00 00 40 11 00 00 c6 33 64 01 cb 00 71 01"
        ));
        // Copied option of 3 bytes (type 0x95), then End.
        header[20..24].copy_from_slice(&hex!("95 03 01 00"));
        let (later, len) = later_header(&header).unwrap();
        assert_eq!(len, 24);
        assert_eq!(&later[20..24], &hex!("95 03 01 00"));
    }

    #[test]
    fn later_header_rejects_broken_options() {
        let mut header = [0u8; 24];
        header[..20].copy_from_slice(&hex!(
            "46 00 00 18 00 01 00 00 40 11 00 00 c6 33 64 01 cb 00 71 01"
        ));
        for bad in [
            hex!("95 01 00 00"),
            hex!("95 05 00 00"),
            hex!("01 01 01 07"),
        ] {
            header[20..24].copy_from_slice(&bad);
            assert_eq!(later_header(&header), Err(DropReason::Malformed));
        }
    }
}
