//! INFORMATIONAL (RFC 7296 §1.4): deletes and liveness checks.

use wire::ike::{Delete, Payload, protocol};

use super::*;

impl Peer {
    pub(super) fn informational_request(
        &mut self,
        idx: usize,
        payloads: &[Payload],
    ) -> Vec<Payload> {
        let mut ours = Vec::new();
        for p in payloads {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                protocol::IKE => {
                    self.sas[idx].dying = true;
                    return Vec::new();
                }
                protocol::ESP => {
                    for spi_out in &d.spis {
                        let found = self.sas[idx]
                            .children
                            .iter()
                            .find(|c| c.info.spi_out == *spi_out)
                            .map(|c| c.info.spi_in);
                        if let Some(spi_in) = found {
                            self.remove_child(idx, spi_in);
                            ours.push(spi_in);
                        }
                    }
                }
                _ => {}
            }
        }
        if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: ours,
            })]
        }
    }
}
