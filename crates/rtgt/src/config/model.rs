//! The configuration model: every object the daemon serves, as one set
//! of types that the TOML file, the control API's JSON (and its OpenAPI
//! schema, derived from these types), the CLI and the importers all read
//! and write. A setting is one field here; its rules are stated once, in
//! [`super::validate`].

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::values::{self, AluaState, BackstoreKind, FaultOp, TpgMode};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Doc {
    /// Settings of the iSCSI fabric as a whole.
    #[serde(default, skip_serializing_if = "IscsiDoc::is_default")]
    pub iscsi: IscsiDoc,
    /// Asymmetric logical unit access (multipath), for every target port
    /// group.
    #[serde(default, skip_serializing_if = "AluaDoc::is_default")]
    pub alua: AluaDoc,
    /// The media LUNs export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backstore: Vec<BackstoreDoc>,
    /// iSCSI targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<TargetDoc>,
    /// vhost-user-scsi controllers: virtual machines' SCSI HBAs, served on
    /// Unix sockets that QEMU connects to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost: Vec<VhostDoc>,
}

/// Settings of the iSCSI fabric as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IscsiDoc {
    /// CHAP algorithms accepted, strongest first (SHA3-256, SHA256, SHA1, MD5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_algorithms: Option<Vec<String>>,
    /// CHAP required of discovery sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_auth: Option<AuthDoc>,
    /// Shortest CHAP_C (bytes) accepted from an initiator (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_min_challenge: Option<u32>,
}

impl IscsiDoc {
    fn is_default(&self) -> bool {
        *self == IscsiDoc::default()
    }
}

/// How target port groups change state (ALUA). Each `[[target.tpg]]` is a
/// target port group of its own (group ID = its tag, or `alua_group`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AluaDoc {
    /// Initiators may change states with SET TARGET PORT GROUPS (INQUIRY
    /// TPGS 11b); default: only the target does (TPGS 01b: the file, the
    /// API, the CLI).
    #[serde(default, skip_serializing_if = "is_false")]
    pub explicit: bool,
    /// Milliseconds a group spends in Transitioning on each change (commands
    /// through it then get ASYMMETRIC ACCESS STATE TRANSITION); default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub transition_ms: u32,
}

impl AluaDoc {
    fn is_default(&self) -> bool {
        *self == AluaDoc::default()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// CHAP credentials: what the initiator proves, and for mutual CHAP what
/// the target proves back. Each secret is given inline or as a file.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthDoc {
    /// The CHAP user name the initiator gives (CHAP_N).
    pub userid: String,
    /// Its secret, 12..255 bytes, inline (the file must then be mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Or a file holding it (mode 0600; one trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub password_file: Option<PathBuf>,
    /// Mutual CHAP: the user name the target answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_userid: Option<String>,
    /// Its secret (never one an initiator authenticates with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_password: Option<String>,
    /// Or a file holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub mutual_password_file: Option<PathBuf>,
}

impl fmt::Debug for AuthDoc {
    // Written out so that inline secrets never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthDoc")
            .field("userid", &self.userid)
            .field("mutual_userid", &self.mutual_userid)
            .finish_non_exhaustive()
    }
}

impl AuthDoc {
    /// Without the inline secrets (files stay: they name, not hold, them).
    fn redacted(&self) -> AuthDoc {
        AuthDoc {
            password: None,
            mutual_password: None,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackstoreDoc {
    /// Letters, digits, '-', '_' and '.'.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: BackstoreKind,
    /// Bytes, or a whole number with K, M, G or T ("10G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[KMGTkmgt]?$")]
    pub size: Option<SizeDoc>,
    /// fileio: the image file; blockio: the block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub path: Option<PathBuf>,
    /// 512 or 4096 (read from the device for blockio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// fileio: cache writes until SYNCHRONIZE CACHE or FUA (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<bool>,
    /// Refuse every write, for every initiator (DATA PROTECT).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Removable medium (RMB=1): initiators may eject and load it, and
    /// lock it with PREVENT ALLOW MEDIUM REMOVAL.
    #[serde(default, skip_serializing_if = "is_false")]
    pub removable: bool,
    /// A physical block larger than the logical one (a power-of-two
    /// multiple of block_size, at most 65536), as 512e disks report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    /// Thin provisioning (UNMAP, WRITE SAME with UNMAP); default on where
    /// the backstore can give space back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin: Option<bool>,
    /// SANITIZE OVERWRITE bytes per second ("100M"); absent or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[KMGTkmgt]?$")]
    pub sanitize_rate: Option<SizeDoc>,
    /// Fault injection, for test rigs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsDoc>,
    /// INQUIRY vendor, up to 8 printable ASCII characters (default "RTGT").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// INQUIRY product, up to 16 (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// INQUIRY revision, up to 4 (default "0001").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Unit serial number, VPD 80h (default: derived from the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// NAA designator, VPD 83h: 16 or 32 hex digits (default: NAA 3,
    /// locally assigned, derived from the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(0x)?([235][0-9a-fA-F]{15}|6[0-9a-fA-F]{31})$")]
    pub naa: Option<String>,
    /// rbd: the Ceph pool that holds the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// rbd: the image's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// rbd: the RADOS namespace within the pool (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// rbd: the cluster's configuration file (default
    /// /etc/ceph/ceph.conf); the keyring is found through it unless
    /// `keyring` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ceph_conf: Option<PathBuf>,
    /// rbd: the client's keyring file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub keyring: Option<PathBuf>,
    /// rbd: the cephx client id (default "admin", i.e. client.admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// rbd: seconds a cluster operation may take before the command fails
    /// with a retryable error (default 25, below the initiators' 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_timeout: Option<u32>,
}

impl BackstoreDoc {
    /// The NAA designator hosts see: the configured one, else NAA 3
    /// derived from the name.
    pub fn naa(&self) -> Result<rtgt_scsi::Naa, String> {
        match &self.naa {
            Some(n) => n.parse(),
            None => Ok(rtgt_scsi::Naa::local_from_name(&self.name)),
        }
    }

    /// The unit serial number hosts see.
    pub fn serial(&self) -> String {
        self.serial
            .clone()
            .unwrap_or_else(|| rtgt_scsi::lu::identity::default_serial(&self.name))
    }

    /// Where an rbd backstore's image is.
    pub fn rbd_options(&self) -> rtgt_rbd::RbdOptions {
        let d = rtgt_rbd::RbdOptions::new(
            self.pool.as_deref().unwrap_or_default(),
            self.image.as_deref().unwrap_or_default(),
        );
        rtgt_rbd::RbdOptions {
            namespace: self.namespace.clone(),
            ceph_conf: self.ceph_conf.clone().unwrap_or(d.ceph_conf.clone()),
            keyring: self.keyring.clone(),
            client: self.client.clone().unwrap_or(d.client.clone()),
            block_size: self.block_size(),
            op_timeout: self.op_timeout.unwrap_or(d.op_timeout),
            ..d
        }
    }

    /// The logical block size (512 unless set; blockio's comes from the
    /// device).
    pub fn block_size(&self) -> u32 {
        self.block_size.unwrap_or(512)
    }

    /// The same medium and LU, differing at most in size: the running LU
    /// is kept (and told of the new capacity) rather than replaced.
    pub fn same_except_size(&self, other: &BackstoreDoc) -> bool {
        BackstoreDoc {
            size: other.size,
            ..self.clone()
        } == *other
    }

    /// A backstore with every optional setting left at its default.
    pub fn new(name: &str, kind: BackstoreKind) -> BackstoreDoc {
        BackstoreDoc {
            name: name.to_string(),
            kind,
            size: None,
            path: None,
            block_size: None,
            write_back: None,
            read_only: false,
            removable: false,
            physical_block_size: None,
            thin: None,
            sanitize_rate: None,
            faults: None,
            vendor: None,
            product: None,
            revision: None,
            serial: None,
            naa: None,
            pool: None,
            image: None,
            namespace: None,
            ceph_conf: None,
            keyring: None,
            client: None,
            op_timeout: None,
        }
    }
}

/// Injected faults (test rigs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsDoc {
    /// Added to every read and write.
    #[serde(default)]
    pub latency_ms: u64,
    /// Blocks that fail.
    #[serde(default)]
    pub rule: Vec<FaultRuleDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRuleDoc {
    /// read, write or any.
    pub op: FaultOp,
    /// The first block of the range.
    pub lba: u64,
    /// How many blocks (at least 1).
    pub blocks: u64,
    /// EIO, ENOSPC, ENXIO or ENODEV.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetDoc {
    /// The target's iSCSI name (iqn., eui. or naa.; compared without case).
    pub iqn: String,
    /// TargetAlias sent at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Its portal groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpg: Vec<TpgDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TpgDoc {
    /// 1..65535.
    pub tag: u16,
    /// "address:port" (port 3260 when left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub portals: Vec<String>,
    /// demo: any initiator sees every LUN; acl: only initiators with an ACL.
    pub mode: TpgMode,
    /// Demo mode: every LUN is read-only for initiators without an ACL.
    #[serde(default, skip_serializing_if = "is_false")]
    pub demo_read_only: bool,
    /// The relative target port identifier (1..65535) persistent
    /// reservations are keyed on; default: derived from the IQN and tag,
    /// stable across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_port_id: Option<u16>,
    /// The group's asymmetric access state (ALUA): active_optimized
    /// (default), active_nonoptimized, standby, unavailable or offline.
    #[serde(default, skip_serializing_if = "AluaState::is_default")]
    pub alua_state: AluaState,
    /// PREF: initiators should prefer this group's paths.
    #[serde(default, skip_serializing_if = "is_false")]
    pub alua_preferred: bool,
    /// The target port group (1..65535) the group's port belongs to;
    /// default: its tag. Groups sharing one ID share its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alua_group: Option<u16>,
    /// CHAP for initiators of this group whose ACL sets none (and for
    /// every initiator in demo mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthDoc>,
    /// The group's LUNs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lun: Vec<LunDoc>,
    /// Node ACLs: the initiators of an acl-mode group and what they see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclDoc>,
}

impl TpgDoc {
    /// A group with no portals, LUNs or ACLs, and every default.
    pub fn new(tag: u16, mode: TpgMode) -> TpgDoc {
        TpgDoc {
            tag,
            portals: Vec::new(),
            mode,
            demo_read_only: false,
            relative_port_id: None,
            alua_state: AluaState::default(),
            alua_preferred: false,
            alua_group: None,
            auth: None,
            lun: Vec::new(),
            acl: Vec::new(),
        }
    }

    /// Its target port group ID.
    pub fn alua_group_id(&self) -> u16 {
        self.alua_group.unwrap_or(self.tag)
    }
}

/// A vhost-user-scsi controller: one target port of its own, whose one
/// initiator is the virtual machine attached to the socket (QEMU's
/// `-device vhost-user-scsi-pci`). Its LUNs are backstores exported as over
/// iSCSI, with the same reservations, unit attentions and ALUA states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VhostDoc {
    /// The Unix socket QEMU connects to (`-chardev socket,path=`); rtgt
    /// creates it, replacing a stale socket but never another kind of file.
    #[schema(value_type = String)]
    pub socket: PathBuf,
    /// Names the controller in the tree, the API and the CLI (letters,
    /// digits, '-', '_' and '.'); default: the socket's file name without
    /// its extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The virtual machine's initiator port name (an iSCSI name: iqn.,
    /// eui. or naa.), as reservations and READ FULL STATUS name it;
    /// default: `naa.` and 16 hex digits derived from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    /// Request queues offered, 1..62 (default 8); QEMU's `num_queues` (by
    /// default one per vCPU) must not exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_queues: Option<u16>,
    /// The target port's name (`naa.` and 16 hex digits); default: derived
    /// from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// The relative target port identifier (1..65535); default: derived
    /// from the name, stable across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_port_id: Option<u16>,
    /// The port's asymmetric access state (ALUA), as for a tpg.
    #[serde(default, skip_serializing_if = "AluaState::is_default")]
    pub alua_state: AluaState,
    /// PREF: initiators should prefer this port.
    #[serde(default, skip_serializing_if = "is_false")]
    pub alua_preferred: bool,
    /// The target port group (1..65535) the port belongs to (a tpg's, to
    /// share its state); default: one of its own, 32768..65535, derived
    /// from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alua_group: Option<u16>,
    /// The controller's LUNs (the VM sees each as target 0, that LUN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lun: Vec<LunDoc>,
}

/// Request queues a controller offers unless told.
pub const VHOST_DEFAULT_QUEUES: u16 = 8;
/// At most this many request queues (see rtgt_vhost's).
pub const VHOST_MAX_QUEUES: u16 = rtgt_vhost::backend::MAX_REQUEST_QUEUES as u16;

impl VhostDoc {
    /// A controller on `socket` with every default.
    pub fn new(socket: impl Into<PathBuf>) -> VhostDoc {
        VhostDoc {
            socket: socket.into(),
            name: None,
            initiator: None,
            num_queues: None,
            wwn: None,
            relative_port_id: None,
            alua_state: AluaState::default(),
            alua_preferred: false,
            alua_group: None,
            lun: Vec::new(),
        }
    }

    /// Its name: the configured one, else the socket's file stem.
    pub fn name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self
                .socket
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// The VM's initiator port name.
    pub fn initiator(&self) -> String {
        match &self.initiator {
            Some(i) => i.clone(),
            None => naa_name(&format!("vhost initiator {}", self.name())),
        }
    }

    /// The target port's name.
    pub fn wwn(&self) -> String {
        match &self.wwn {
            Some(w) => w.to_ascii_lowercase(),
            None => naa_name(&format!("vhost target {}", self.name())),
        }
    }

    pub fn num_queues(&self) -> u16 {
        self.num_queues.unwrap_or(VHOST_DEFAULT_QUEUES)
    }

    /// Its target port group ID.
    pub fn alua_group_id(&self) -> u16 {
        self.alua_group.unwrap_or_else(|| {
            let h = rtgt_scsi::lu::identity::fnv1a(&format!("vhost group {}", self.name()));
            0x8000 | (h as u16 & 0x7fff)
        })
    }

    /// Its key among the relative port assignments (tpgs are (IQN, tag),
    /// tags are never 0).
    pub fn port_key(&self) -> (String, u16) {
        (format!("vhost:{}", self.name()), 0)
    }
}

/// `naa.` and 16 hex digits: a locally assigned NAA (3h) derived from `seed`.
fn naa_name(seed: &str) -> String {
    format!("naa.{}", rtgt_scsi::Naa::local_from_name(seed).hex())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LunDoc {
    /// 0..16383.
    pub lun: u64,
    /// The name of the backstore it exports.
    pub backstore: String,
    /// Write-protected for every initiator of the group.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclDoc {
    /// The initiator's iSCSI name (compared without case).
    pub initiator: String,
    /// Its own CHAP credentials (else the group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthDoc>,
    /// The LUNs it sees, under the numbers it sees them as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped_lun: Vec<MappedLunDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappedLunDoc {
    /// The LUN number the initiator sees (0..16383).
    pub mapped_lun: u64,
    /// The group's LUN it reaches.
    pub tpg_lun: u64,
    /// Write-protected for this initiator.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A byte count, written `"10G"` when a whole number of a unit, else as
/// digits; read from either form (or a plain integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeDoc(pub u64);

impl Serialize for SizeDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for SizeDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        values::Size::deserialize(d).map(|s| SizeDoc(s.0))
    }
}

/// `1073741824` -> `"1G"`; sizes that are no whole number of a unit stay digits.
/// The order people expect names in: runs of digits compare as numbers
/// (k10x2 before k10x10), letters without case; ties broken exactly, so
/// the order is total.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, run))
        })
    }
    let mut x = runs(a);
    let mut y = runs(b);
    loop {
        let ord = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            (Some((_, p)), Some((_, q))) => p
                .chars()
                .map(|c| c.to_ascii_lowercase())
                .cmp(q.chars().map(|c| c.to_ascii_lowercase())),
        };
        if ord.is_ne() {
            return ord;
        }
    }
}

pub fn format_size(n: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

impl Doc {
    /// Sort every list by its objects' identities, so that the saved file
    /// is stable (diffs in git show changes, not reorderings).
    pub fn canonicalize(&mut self) {
        self.backstore.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        self.target.sort_by(|a, b| natural_cmp(&a.iqn, &b.iqn));
        for t in &mut self.target {
            t.tpg.sort_by_key(|g| g.tag);
            for g in &mut t.tpg {
                g.lun.sort_by_key(|l| l.lun);
                g.acl
                    .sort_by(|a, b| natural_cmp(&a.initiator, &b.initiator));
                for a in &mut g.acl {
                    a.mapped_lun.sort_by_key(|m| m.mapped_lun);
                }
            }
        }
        self.vhost.sort_by(|a, b| natural_cmp(&a.name(), &b.name()));
        for v in &mut self.vhost {
            v.lun.sort_by_key(|l| l.lun);
        }
    }

    /// The document without inline CHAP secrets.
    pub fn redacted(&self) -> Doc {
        let mut d = self.clone();
        let hide = |a: &mut Option<AuthDoc>| {
            if let Some(x) = a {
                *x = x.redacted();
            }
        };
        hide(&mut d.iscsi.discovery_auth);
        for t in &mut d.target {
            for g in &mut t.tpg {
                hide(&mut g.auth);
                for a in &mut g.acl {
                    hide(&mut a.auth);
                }
            }
        }
        d
    }

    /// Check the document as a file would be checked; the model it
    /// describes (secrets read), or what is wrong.
    pub fn check(&self) -> Result<crate::model::Model, String> {
        super::validate::validate(self).map_err(|e| e.text())
    }

    pub fn target(&self, iqn: &str) -> Option<&TargetDoc> {
        self.target.iter().find(|t| t.iqn.eq_ignore_ascii_case(iqn))
    }

    pub fn target_mut(&mut self, iqn: &str) -> Option<&mut TargetDoc> {
        self.target
            .iter_mut()
            .find(|t| t.iqn.eq_ignore_ascii_case(iqn))
    }

    pub fn vhost(&self, name: &str) -> Option<&VhostDoc> {
        self.vhost.iter().find(|v| v.name() == name)
    }

    pub fn vhost_mut(&mut self, name: &str) -> Option<&mut VhostDoc> {
        self.vhost.iter_mut().find(|v| v.name() == name)
    }

    pub fn backstore(&self, name: &str) -> Option<&BackstoreDoc> {
        self.backstore.iter().find(|b| b.name == name)
    }

    /// The LUNs that use backstore `name`, as tree paths.
    pub fn backstore_users(&self, name: &str) -> Vec<String> {
        let mut users = Vec::new();
        for t in &self.target {
            for g in &t.tpg {
                for l in g.lun.iter().filter(|l| l.backstore == name) {
                    users.push(format!("/iscsi/{}/tpg{}/luns/lun{}", t.iqn, g.tag, l.lun));
                }
            }
        }
        for v in &self.vhost {
            for l in v.lun.iter().filter(|l| l.backstore == name) {
                users.push(format!("/vhost/{}/luns/lun{}", v.name(), l.lun));
            }
        }
        users
    }
}

/// Where a backstore sits in the tree.
pub fn backstore_path(b: &BackstoreDoc) -> String {
    format!("/backstores/{}/{}", kind_name(b.kind), b.name)
}

pub fn kind_name(k: BackstoreKind) -> &'static str {
    match k {
        BackstoreKind::Ramdisk => "ramdisk",
        BackstoreKind::Fileio => "fileio",
        BackstoreKind::Blockio => "blockio",
        BackstoreKind::Rbd => "rbd",
    }
}
