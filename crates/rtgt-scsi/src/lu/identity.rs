//! How a logical unit is known to hosts: the INQUIRY vendor, product and
//! revision, the unit serial number (VPD 80h) and the NAA designator (VPD
//! 83h). Multipath WWIDs, Windows disk signatures, VMware datastores and
//! backup tools key on these, so they are the administrator's to set and
//! must never change by themselves.
//!
//! The rules for each field are stated here once; the configuration, the
//! control API and the importers all check with them.

use std::fmt;

/// An NAA designator (SPC-4 7.8.6.6): 8 bytes (NAA 2, 3, 5) or 16 bytes
/// (NAA 6, IEEE Registered Extended, as LIO reports).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Naa {
    len: u8,
    bytes: [u8; 16],
}

impl Naa {
    /// The default for an LU of this name: NAA 3 (locally assigned), 60
    /// bits of a hash of the name. Locally assigned needs no IEEE company
    /// ID, so rtgt does not borrow another vendor's.
    pub fn local_from_name(name: &str) -> Naa {
        let h = fnv1a(name);
        Naa::from_u64((0x3u64 << 60) | (h & 0x0fff_ffff_ffff_ffff))
    }

    /// An 8-byte designator.
    pub fn from_u64(v: u64) -> Naa {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&v.to_be_bytes());
        Naa { len: 8, bytes }
    }

    /// The designator as it is carried in VPD 83h and EXTENDED COPY
    /// identification descriptors.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Bytes as a designator, if they are one (8 bytes of NAA 2, 3 or 5, or
    /// 16 of NAA 6).
    pub fn from_bytes(b: &[u8]) -> Option<Naa> {
        let naa = b.first()? >> 4;
        let ok = matches!((b.len(), naa), (8, 2 | 3 | 5) | (16, 6));
        ok.then(|| {
            let mut bytes = [0u8; 16];
            bytes[..b.len()].copy_from_slice(b);
            Naa {
                len: b.len() as u8,
                bytes,
            }
        })
    }

    /// Lower-case hex digits, as written in the configuration (and in
    /// `/dev/disk/by-id/wwn-0x…`).
    pub fn hex(&self) -> String {
        self.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::str::FromStr for Naa {
    type Err = String;
    /// 16 or 32 hex digits, optionally after `0x` or `naa.`; the first
    /// digit is the NAA type (2, 3, 5 with 16 digits; 6 with 32).
    fn from_str(s: &str) -> Result<Naa, String> {
        let t = s.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("naa."))
            .unwrap_or(t);
        if !(t.len() == 16 || t.len() == 32) || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("naa {s:?} must be 16 or 32 hex digits"));
        }
        let bytes: Vec<u8> = (0..t.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap_or(0))
            .collect();
        Naa::from_bytes(&bytes).ok_or_else(|| {
            format!(
                "naa {s:?}: the first digit is the NAA type: 2, 3 (locally assigned) or 5 \
                 (IEEE registered) with 16 digits, 6 (registered extended) with 32"
            )
        })
    }
}

impl fmt::Display for Naa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Naa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Naa({})", self.hex())
    }
}

/// The longest fields INQUIRY carries.
pub const VENDOR_LEN: usize = 8;
pub const PRODUCT_LEN: usize = 16;
pub const REVISION_LEN: usize = 4;
/// A unit serial number fits VPD 80h's one-byte-length era (and LIO's).
pub const SERIAL_LEN: usize = 254;

/// Check an INQUIRY field or serial: printable ASCII (SPC-4 4.3.1), at
/// most `max` bytes. `key` names the field in the message.
pub fn check_ascii(key: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{key} {value:?} is longer than {max} characters"));
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(format!("{key} {value:?} may hold printable ASCII only"));
    }
    Ok(())
}

/// Check a unit serial number: non-empty printable ASCII without spaces
/// at either end (hosts trim them, so two serials differing only there
/// would look the same).
pub fn check_serial(value: &str) -> Result<(), String> {
    check_ascii("serial", value, SERIAL_LEN)?;
    if value.is_empty() || value.trim() != value {
        return Err(format!(
            "serial {value:?} must be non-empty, without spaces at either end"
        ));
    }
    Ok(())
}

/// The default serial of an LU of this name: 16 hex digits of its hash.
pub fn default_serial(name: &str) -> String {
    format!("{:016x}", fnv1a(name))
}

/// FNV-1a: a stable, dependency-free hash, so defaults derived from a name
/// are the same on every host and after every restart.
pub fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa_forms() {
        let lio: Naa = "6001405a1b2c3d4e5f60718293a4b5c6".parse().unwrap();
        assert_eq!(lio.as_bytes().len(), 16);
        assert_eq!(lio.hex(), "6001405a1b2c3d4e5f60718293a4b5c6");
        let eight: Naa = "0x5000c500a1b2c3d4".parse().unwrap();
        assert_eq!(eight.as_bytes(), &0x5000_c500_a1b2_c3d4u64.to_be_bytes());
        assert_eq!("naa.5000C500A1B2C3D4".parse::<Naa>().unwrap(), eight);
        for bad in [
            "",
            "5000c500a1b2c3",
            "6000c500a1b2c3d4",
            "5001405a1b2c3d4e5f60718293a4b5c6",
            "1000c500a1b2c3d4",
            "500zc500a1b2c3d4",
        ] {
            assert!(bad.parse::<Naa>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_is_locally_assigned_and_stable() {
        let a = Naa::local_from_name("disk0");
        assert_eq!(a.as_bytes()[0] >> 4, 3, "NAA 3: no borrowed company ID");
        assert_eq!(a, Naa::local_from_name("disk0"));
        assert_ne!(a, Naa::local_from_name("disk1"));
        assert_eq!(Naa::from_bytes(a.as_bytes()), Some(a));
        assert_eq!(default_serial("disk0"), default_serial("disk0"));
    }

    #[test]
    fn fields() {
        assert!(check_ascii("vendor", "LIO-ORG", VENDOR_LEN).is_ok());
        assert!(check_ascii("vendor", "TOO-LONG-X", VENDOR_LEN).is_err());
        assert!(check_ascii("product", "disk\u{e9}", PRODUCT_LEN).is_err());
        assert!(check_serial("a1b2-c3").is_ok());
        assert!(check_serial(" a1").is_err());
        assert!(check_serial("").is_err());
    }
}
