//! Request ids: UUID v7, whose last four bytes are a tag of the org the
//! request belongs to, so `POST /v1/feedback` can tell, with no lookup, that
//! a request id is not one of the scoring key's org (another org's request,
//! a mistyped or made-up id) and answer 404 instead of storing a score no
//! one will ever see. The tag is a check against mistakes, not a secret:
//! a score is stored under the scoring key's org and only ever joined with
//! that org's requests.

use uuid::Uuid;

/// `id` with its tag for `org` (the version and variant bits, the time and
/// the first random bits are kept).
pub fn tagged(id: Uuid, org: Uuid) -> Uuid {
    let mut bytes = *id.as_bytes();
    let tag = tag(org, &bytes);
    bytes[12..].copy_from_slice(&tag.to_be_bytes());
    Uuid::from_bytes(bytes)
}

/// Whether `id` was minted by a gateway for a request of `org`.
pub fn belongs_to(id: Uuid, org: Uuid) -> bool {
    let bytes = id.as_bytes();
    bytes[12..] == tag(org, bytes).to_be_bytes()
}

/// 32 bits of a hash of the org and the id's first twelve bytes.
fn tag(org: Uuid, id: &[u8; 16]) -> u32 {
    let (org_high, org_low) = org.as_u64_pair();
    let mut head = [0u8; 8];
    head.copy_from_slice(&id[..8]);
    let mut rest = [0u8; 4];
    rest.copy_from_slice(&id[8..12]);
    let mut x = mix(org_high ^ 0x666c_6f6f_7079_7264);
    x = mix(x ^ org_low);
    x = mix(x ^ u64::from_be_bytes(head));
    x = mix(x ^ u64::from(u32::from_be_bytes(rest)));
    (x >> 32) as u32
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: Uuid = Uuid::from_u128(0xA);
    const OTHER: Uuid = Uuid::from_u128(0xB);

    #[test]
    fn a_tagged_id_belongs_to_its_org_only_and_stays_a_uuid_v7() {
        for _ in 0..1_000 {
            let raw = Uuid::now_v7();
            let id = tagged(raw, ORG);
            assert!(belongs_to(id, ORG));
            assert!(!belongs_to(id, OTHER), "{id}");
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.as_bytes()[..12], raw.as_bytes()[..12]);
        }
    }

    #[test]
    fn an_id_no_gateway_minted_for_the_org_does_not_belong_to_it() {
        let misses = (0..10_000)
            .filter(|_| belongs_to(Uuid::now_v7(), ORG))
            .count();
        assert_eq!(misses, 0, "random ids pass one time in 2^32");
        let id = tagged(Uuid::now_v7(), ORG);
        let mut typo = *id.as_bytes();
        typo[3] ^= 1;
        assert!(!belongs_to(Uuid::from_bytes(typo), ORG));
    }
}
