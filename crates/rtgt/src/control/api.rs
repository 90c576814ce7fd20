//! Routes of the control API and the OpenAPI document generated from the
//! same handler annotations and types (`GET /openapi.json`).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection, StringRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::ops::{self, OpResult};
use super::{ApiError, ErrorBody, Shared};
use crate::config::BackstoreKind;
use crate::config::{
    self, AclDoc, AuthDoc, BackstoreDoc, Change, Doc, TargetDoc, TpgDoc, VhostDoc,
};

type ApiResult<T> = Result<T, ApiError>;

/// What a change did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Changes {
    /// Object by object; empty when nothing had to change.
    pub changes: Vec<Change>,
}

/// Sessions and open backstores.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub tpgs: Vec<TpgStatus>,
    pub backstores: Vec<BackstoreStatus>,
    /// vhost-user-scsi controllers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost: Vec<VhostStatus>,
    /// The file changes are saved to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TpgStatus {
    pub iqn: String,
    pub tag: u16,
    /// Sessions open on the group.
    pub sessions: usize,
    /// The addresses it is served on now (the portals as bound, or the
    /// `--listen` addresses that replace them).
    pub listening: Vec<String>,
    /// Whether `rtgt serve --listen` replaced the configured portals.
    pub portals_overridden: bool,
    /// Its ALUA target port group.
    pub alua_group: u16,
    /// That group's access state as initiators see it now (transitioning
    /// while a change is under way).
    pub alua_state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VhostStatus {
    pub name: String,
    pub socket: String,
    /// Whether a VM is attached now.
    pub connected: bool,
    /// The VM's initiator port name and the controller's target port.
    pub initiator: String,
    pub wwn: String,
    pub relative_port_id: u16,
    pub alua_group: u16,
    pub alua_state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackstoreStatus {
    pub name: String,
    pub capacity_bytes: u64,
    pub block_size: u32,
    /// LUNs that use it, as tree paths.
    pub used_by: Vec<String>,
    /// The unit serial number and NAA designator hosts see (set, or the
    /// defaults derived from the name): what to pin before a move.
    pub serial: String,
    pub naa: String,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretsQuery {
    /// Include inline CHAP secrets.
    #[serde(default)]
    pub secrets: bool,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Only compute the difference; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The file name to use in error messages.
    #[serde(default)]
    pub name: Option<String>,
}

/// Run `f` on a copy of the document and make the target serve the result.
async fn change(live: &Shared, f: impl FnOnce(&mut Doc) -> OpResult) -> ApiResult<Json<Changes>> {
    let mut l = live.lock().await;
    let mut d = l.doc().clone();
    f(&mut d)?;
    ramdisk_sizes(l.doc(), &d)?;
    let changes = l.replace(d, true).await?;
    Ok(Json(Changes { changes }))
}

/// Files the daemon opens are named by absolute paths: a relative one would
/// be resolved against the daemon's working directory, not the client's.
fn absolute(what: &str, p: Option<&std::path::Path>) -> ApiResult<()> {
    match p {
        Some(p) if !p.is_absolute() => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{what} {:?} is relative: give an absolute path (the daemon does not run in your directory)",
                p.display().to_string()
            ),
        )),
        _ => Ok(()),
    }
}

fn absolute_paths(b: &BackstoreDoc) -> ApiResult<()> {
    absolute("path", b.path.as_deref())
}

fn auth_paths(a: &AuthDoc) -> ApiResult<()> {
    absolute("password_file", a.password_file.as_deref())?;
    absolute("mutual_password_file", a.mutual_password_file.as_deref())
}

/// A RAM disk keeps what is written to it in memory, and its block table
/// takes memory even while empty (tens of MiB for the largest): one bigger
/// than the machine's memory is refused, so that neither a typo nor a
/// client can make the daemon exhaust it. RAM disks that are already there
/// with their size (from the file the daemon started with) stay.
fn ramdisk_sizes(old: &Doc, new: &Doc) -> ApiResult<()> {
    let mem = physical_memory();
    for b in &new.backstore {
        let Some(config::SizeDoc(size)) = b.size else {
            continue;
        };
        if b.kind != BackstoreKind::Ramdisk || size <= mem {
            continue;
        }
        if old
            .backstore(&b.name)
            .is_some_and(|o| o.kind == b.kind && o.size == b.size)
        {
            continue;
        }
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "ramdisk {:?}: size {} is more than this machine's memory ({}); a RAM disk keeps its data in memory: give a smaller size, or use a fileio backstore (a sparse file) for a bigger disk",
                b.name,
                config::format_size(size),
                format_args!("{:.1}G", mem as f64 / (1u64 << 30) as f64)
            ),
        ));
    }
    Ok(())
}

/// Bytes of physical memory (`u64::MAX` if unknown).
fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page <= 0 {
        return u64::MAX;
    }
    (pages as u64).saturating_mul(page as u64)
}

fn created(j: Json<Changes>) -> Response {
    (StatusCode::CREATED, j).into_response()
}

fn redacted(live: &crate::serve::Live, secrets: bool) -> Doc {
    if secrets {
        live.doc().clone()
    } else {
        live.doc().redacted()
    }
}

#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    params(SecretsQuery),
    responses((status = 200, description = "The running configuration as the TOML file `rtgt serve --config` reads", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid query", body = ErrorBody)))]
async fn get_config(
    State(live): State<Shared>,
    q: Result<Query<SecretsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = q?.0;
    let text = live.lock().await.doc().to_toml(q.secrets);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[utoipa::path(put, path = "/api/v1/config", tag = "config",
    params(ApplyQuery),
    request_body(content = String, description = "A whole configuration in the TOML file format", content_type = "text/plain"),
    responses(
        (status = 200, description = "What changed (or would, with dry_run); applying the same file again changes nothing", body = Changes),
        (status = 400, description = "The file is not valid", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a portal cannot be bound, a backstore cannot be opened)", body = ErrorBody),
        (status = 503, description = "Applied but could not be saved, so undone", body = ErrorBody)))]
async fn put_config(
    State(live): State<Shared>,
    q: Result<Query<ApplyQuery>, QueryRejection>,
    body: Result<String, StringRejection>,
) -> ApiResult<Json<Changes>> {
    let q = q?.0;
    let body = body?;
    let name = q.name.unwrap_or_else(|| "<request>".into());
    let new = crate::config::parse(std::path::Path::new(&name), &body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?
        .doc;
    let mut l = live.lock().await;
    ramdisk_sizes(l.doc(), &new)?;
    if q.dry_run {
        return Ok(Json(Changes {
            changes: config::diff(l.doc(), &new),
        }));
    }
    let changes = l.replace(new, true).await?;
    Ok(Json(Changes { changes }))
}

#[utoipa::path(post, path = "/api/v1/config/save", tag = "config",
    responses(
        (status = 200, description = "Saved to the --config file", body = Changes),
        (status = 409, description = "The daemon runs without a --config file", body = ErrorBody),
        (status = 503, description = "The file could not be written", body = ErrorBody)))]
async fn save_config(State(live): State<Shared>) -> ApiResult<Json<Changes>> {
    let mut l = live.lock().await;
    if l.config_path().is_none() {
        return Err(ApiError(StatusCode::CONFLICT, "rtgt serve runs without --config FILE, so there is no file to save to; restart it with --config, or use `rtgt config dump > FILE`".into()));
    }
    l.save()
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(Json(Changes {
        changes: Vec::new(),
    }))
}

#[utoipa::path(get, path = "/api/v1/tree", tag = "config",
    params(SecretsQuery),
    responses((status = 200, description = "The whole configuration as JSON", body = Doc),
        (status = 400, description = "Invalid query", body = ErrorBody)))]
async fn get_tree(
    State(live): State<Shared>,
    q: Result<Query<SecretsQuery>, QueryRejection>,
) -> ApiResult<Json<Doc>> {
    let q = q?.0;
    Ok(Json(redacted(&*live.lock().await, q.secrets)))
}

#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, description = "Sessions per portal group and open backstores", body = Status)))]
async fn get_status(State(live): State<Shared>) -> Json<Status> {
    let l = live.lock().await;
    let counts = l.session_counts();
    let listening = l.listening();
    let overridden = l.portals_overridden();
    let alua = l.alua_states();
    let d = l.doc();
    let mut tpgs = Vec::new();
    for t in &d.target {
        for g in &t.tpg {
            let key = (t.iqn.to_ascii_lowercase(), g.tag);
            tpgs.push(TpgStatus {
                iqn: t.iqn.clone(),
                tag: g.tag,
                sessions: counts.get(&key).copied().unwrap_or(0),
                listening: listening
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .map(|a| a.to_string())
                    .collect(),
                portals_overridden: overridden,
                alua_group: g.alua_group_id(),
                alua_state: alua
                    .get(&g.alua_group_id())
                    .map_or(g.alua_state.name(), |s| s.name())
                    .to_string(),
            });
        }
    }
    let backstores = l
        .backstore_state()
        .into_iter()
        .map(|(name, (capacity_bytes, block_size))| {
            let used_by = d.backstore_users(&name);
            let b = d.backstore(&name);
            BackstoreStatus {
                serial: b.map(|b| b.serial()).unwrap_or_default(),
                naa: b
                    .and_then(|b| b.naa().ok())
                    .map(|n| n.hex())
                    .unwrap_or_default(),
                name,
                capacity_bytes,
                block_size,
                used_by,
            }
        })
        .collect();
    let running = l.vhost_state();
    let vhost = d
        .vhost
        .iter()
        .map(|v| {
            let name = v.name();
            let (connected, relative_port_id) = running.get(&name).copied().unwrap_or((false, 0));
            VhostStatus {
                socket: v.socket.display().to_string(),
                connected,
                initiator: v.initiator(),
                wwn: v.wwn(),
                relative_port_id,
                alua_group: v.alua_group_id(),
                alua_state: alua
                    .get(&v.alua_group_id())
                    .map_or(v.alua_state.name(), |s| s.name())
                    .to_string(),
                name,
            }
        })
        .collect();
    Json(Status {
        tpgs,
        backstores,
        vhost,
        config_file: l.config_path().map(|p| p.display().to_string()),
    })
}

#[utoipa::path(get, path = "/api/v1/backstores", tag = "backstores",
    responses((status = 200, description = "Every backstore", body = Vec<BackstoreDoc>)))]
async fn list_backstores(State(live): State<Shared>) -> Json<Vec<BackstoreDoc>> {
    Json(live.lock().await.doc().backstore.clone())
}

#[utoipa::path(post, path = "/api/v1/backstores", tag = "backstores",
    request_body = BackstoreDoc,
    responses(
        (status = 201, description = "Created and opened", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "The name is taken, or the medium cannot be opened", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_backstore(
    State(live): State<Shared>,
    b: Result<Json<BackstoreDoc>, JsonRejection>,
) -> ApiResult<Response> {
    let b = b?.0;
    absolute_paths(&b)?;
    change(&live, |d| ops::create_backstore(d, b))
        .await
        .map(created)
}

#[utoipa::path(get, path = "/api/v1/backstores/{name}", tag = "backstores",
    params(("name" = String, Path, description = "Backstore name")),
    responses((status = 200, description = "The backstore", body = BackstoreDoc),
        (status = 400, description = "Invalid (the name is not UTF-8)", body = ErrorBody),
        (status = 404, description = "No such backstore", body = ErrorBody)))]
async fn get_backstore(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<BackstoreDoc>> {
    let name = p?.0;
    let l = live.lock().await;
    l.doc().backstore(&name).cloned().map(Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no backstore named {name:?}"),
        )
    })
}

#[utoipa::path(patch, path = "/api/v1/backstores/{name}", tag = "backstores",
    params(("name" = String, Path, description = "Backstore name")),
    request_body = ops::BackstorePatch,
    responses((status = 200, description = "Changed", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such backstore", body = ErrorBody),
        (status = 409, description = "Cannot be served (e.g. shrinking a LU in use)", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn patch_backstore(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
    b: Result<Json<ops::BackstorePatch>, JsonRejection>,
) -> ApiResult<Json<Changes>> {
    let name = p?.0;
    let b = b?.0;
    change(&live, |d| ops::patch_backstore(d, &name, b)).await
}

#[utoipa::path(delete, path = "/api/v1/backstores/{name}", tag = "backstores",
    params(("name" = String, Path, description = "Backstore name")),
    responses((status = 200, description = "Deleted (flushed and closed)", body = Changes),
        (status = 404, description = "No such backstore", body = ErrorBody),
        (status = 409, description = "LUNs still use it", body = ErrorBody),
        (status = 400, description = "Invalid: refused as a file with the change would be", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_backstore(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let name = p?.0;
    change(&live, |d| ops::delete_backstore(d, &name)).await
}

#[utoipa::path(get, path = "/api/v1/targets", tag = "targets",
    responses((status = 200, description = "Every target with its portal groups (secrets left out)", body = Vec<TargetDoc>)))]
async fn list_targets(State(live): State<Shared>) -> Json<Vec<TargetDoc>> {
    Json(live.lock().await.doc().redacted().target)
}

#[utoipa::path(post, path = "/api/v1/targets", tag = "targets",
    request_body = ops::NewTarget,
    responses((status = 201, description = "Created", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "It exists already", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_target(
    State(live): State<Shared>,
    b: Result<Json<ops::NewTarget>, JsonRejection>,
) -> ApiResult<Response> {
    let b = b?.0;
    change(&live, |d| ops::create_target(d, b))
        .await
        .map(created)
}

#[utoipa::path(get, path = "/api/v1/targets/{iqn}", tag = "targets",
    params(("iqn" = String, Path, description = "Target name")),
    responses((status = 200, description = "The target (secrets left out)", body = TargetDoc),
        (status = 400, description = "Invalid (the name is not UTF-8)", body = ErrorBody),
        (status = 404, description = "No such target", body = ErrorBody)))]
async fn get_target(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<TargetDoc>> {
    let iqn = p?.0;
    let d = live.lock().await.doc().redacted();
    d.target(&iqn)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no target {iqn:?}")))
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}", tag = "targets",
    params(("iqn" = String, Path, description = "Target name")),
    responses((status = 200, description = "Deleted; its sessions end", body = Changes),
        (status = 404, description = "No such target", body = ErrorBody),
        (status = 400, description = "Invalid: refused as a file with the change would be", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_target(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let iqn = p?.0;
    change(&live, |d| ops::delete_target(d, &iqn)).await
}

#[utoipa::path(post, path = "/api/v1/targets/{iqn}/tpgs", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name")),
    request_body = ops::NewTpg,
    responses((status = 201, description = "Created", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such target", body = ErrorBody),
        (status = 409, description = "The tag is taken", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_tpg(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
    b: Result<Json<ops::NewTpg>, JsonRejection>,
) -> ApiResult<Response> {
    let iqn = p?.0;
    let b = b?.0;
    change(&live, |d| ops::create_tpg(d, &iqn, b).map(|_| ()))
        .await
        .map(created)
}

#[utoipa::path(get, path = "/api/v1/targets/{iqn}/tpgs/{tag}", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    responses((status = 200, description = "The portal group (secrets left out)", body = TpgDoc),
        (status = 400, description = "Invalid tag", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody)))]
async fn get_tpg(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
) -> ApiResult<Json<TpgDoc>> {
    let (iqn, tag) = p?.0;
    let mut d = live.lock().await.doc().redacted();
    Ok(Json(ops::tpg_mut(&mut d, &iqn, tag)?.clone()))
}

#[utoipa::path(patch, path = "/api/v1/targets/{iqn}/tpgs/{tag}", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    request_body = ops::TpgPatch,
    responses((status = 200, description = "Changed", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn patch_tpg(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
    b: Result<Json<ops::TpgPatch>, JsonRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag) = p?.0;
    let b = b?.0;
    change(&live, |d| ops::patch_tpg(d, &iqn, tag, b)).await
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    responses((status = 200, description = "Deleted; its sessions end", body = Changes),
        (status = 400, description = "Invalid tag", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_tpg(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag) = p?.0;
    change(&live, |d| ops::delete_tpg(d, &iqn, tag)).await
}

#[utoipa::path(put, path = "/api/v1/targets/{iqn}/tpgs/{tag}/auth", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    request_body = AuthDoc,
    responses((status = 200, description = "CHAP required of the group's initiators that have no ACL setting of their own; sessions it concerns end", body = Changes),
        (status = 400, description = "Invalid (e.g. a secret shorter than 12 bytes)", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn set_tpg_auth(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
    b: Result<Json<AuthDoc>, JsonRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag) = p?.0;
    let b = b?.0;
    auth_paths(&b)?;
    change(&live, |d| ops::set_tpg_auth(d, &iqn, tag, Some(b))).await
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}/auth", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    responses((status = 200, description = "No CHAP at group level", body = Changes),
        (status = 400, description = "Invalid tag", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn clear_tpg_auth(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag) = p?.0;
    change(&live, |d| ops::set_tpg_auth(d, &iqn, tag, None)).await
}

#[utoipa::path(post, path = "/api/v1/targets/{iqn}/tpgs/{tag}/portals", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    request_body = ops::NewPortal,
    responses((status = 201, description = "Listening", body = Changes),
        (status = 400, description = "Invalid address", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Exists already, or cannot be bound", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_portal(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
    b: Result<Json<ops::NewPortal>, JsonRejection>,
) -> ApiResult<Response> {
    let (iqn, tag) = p?.0;
    let b = b?.0;
    change(&live, |d| ops::create_portal(d, &iqn, tag, b))
        .await
        .map(created)
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}/portals/{address}", tag = "tpgs",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("address" = String, Path, description = "address:port")),
    responses((status = 200, description = "Deleted", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such portal", body = ErrorBody),
        (status = 409, description = "It is the last portal of the target", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_portal(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag, address) = p?.0;
    change(&live, |d| ops::delete_portal(d, &iqn, tag, &address)).await
}

#[utoipa::path(post, path = "/api/v1/targets/{iqn}/tpgs/{tag}/luns", tag = "luns",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    request_body = ops::NewLun,
    responses((status = 201, description = "Created; initiators that see it are told REPORTED LUNS DATA HAS CHANGED", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such group or backstore", body = ErrorBody),
        (status = 409, description = "The number is taken", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_lun(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
    b: Result<Json<ops::NewLun>, JsonRejection>,
) -> ApiResult<Response> {
    let (iqn, tag) = p?.0;
    let b = b?.0;
    change(&live, |d| ops::create_lun(d, &iqn, tag, b).map(|_| ()))
        .await
        .map(created)
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}/luns/{lun}", tag = "luns",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("lun" = u64, Path, description = "LUN number")),
    responses((status = 200, description = "Deleted, with the mapped LUNs that reached it", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such LUN", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_lun(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, u64)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag, lun) = p?.0;
    change(&live, |d| ops::delete_lun(d, &iqn, tag, lun)).await
}

#[utoipa::path(post, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag")),
    request_body = ops::NewAcl,
    responses((status = 201, description = "Created", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The initiator has an ACL already", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_acl(
    State(live): State<Shared>,
    p: Result<Path<(String, u16)>, PathRejection>,
    b: Result<Json<ops::NewAcl>, JsonRejection>,
) -> ApiResult<Response> {
    let (iqn, tag) = p?.0;
    let b = b?.0;
    if let Some(a) = &b.auth {
        auth_paths(a)?;
    }
    change(&live, |d| ops::create_acl(d, &iqn, tag, b))
        .await
        .map(created)
}

#[utoipa::path(get, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls/{initiator}", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("initiator" = String, Path, description = "Initiator name")),
    responses((status = 200, description = "The ACL (secrets left out)", body = AclDoc),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such ACL", body = ErrorBody)))]
async fn get_acl(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String)>, PathRejection>,
) -> ApiResult<Json<AclDoc>> {
    let (iqn, tag, initiator) = p?.0;
    let mut d = live.lock().await.doc().redacted();
    Ok(Json(ops::acl_mut(&mut d, &iqn, tag, &initiator)?.clone()))
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls/{initiator}", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("initiator" = String, Path, description = "Initiator name")),
    responses((status = 200, description = "Deleted; the initiator's sessions end", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such ACL", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_acl(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag, initiator) = p?.0;
    change(&live, |d| ops::delete_acl(d, &iqn, tag, &initiator)).await
}

#[utoipa::path(put, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls/{initiator}/auth", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("initiator" = String, Path, description = "Initiator name")),
    request_body = AuthDoc,
    responses((status = 200, description = "CHAP for this initiator; its sessions end", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such ACL", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn set_acl_auth(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String)>, PathRejection>,
    b: Result<Json<AuthDoc>, JsonRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag, initiator) = p?.0;
    let b = b?.0;
    auth_paths(&b)?;
    change(&live, |d| {
        ops::set_acl_auth(d, &iqn, tag, &initiator, Some(b))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls/{initiator}/auth", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("initiator" = String, Path, description = "Initiator name")),
    responses((status = 200, description = "The group's CHAP setting applies again", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such ACL", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn clear_acl_auth(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag, initiator) = p?.0;
    change(&live, |d| ops::set_acl_auth(d, &iqn, tag, &initiator, None)).await
}

#[utoipa::path(post, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls/{initiator}/mapped_luns", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("initiator" = String, Path, description = "Initiator name")),
    request_body = ops::NewMappedLun,
    responses((status = 201, description = "Mapped; the initiator is told REPORTED LUNS DATA HAS CHANGED", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such ACL or group LUN", body = ErrorBody),
        (status = 409, description = "The number is taken", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_mapped_lun(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String)>, PathRejection>,
    b: Result<Json<ops::NewMappedLun>, JsonRejection>,
) -> ApiResult<Response> {
    let (iqn, tag, initiator) = p?.0;
    let b = b?.0;
    change(&live, |d| {
        ops::create_mapped_lun(d, &iqn, tag, &initiator, b).map(|_| ())
    })
    .await
    .map(created)
}

#[utoipa::path(delete, path = "/api/v1/targets/{iqn}/tpgs/{tag}/acls/{initiator}/mapped_luns/{mapped_lun}", tag = "acls",
    params(("iqn" = String, Path, description = "Target name"), ("tag" = u16, Path, description = "Portal group tag"), ("initiator" = String, Path, description = "Initiator name"), ("mapped_lun" = u64, Path, description = "Mapped LUN number")),
    responses((status = 200, description = "Unmapped; the initiator is told REPORTED LUNS DATA HAS CHANGED", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such mapped LUN", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_mapped_lun(
    State(live): State<Shared>,
    p: Result<Path<(String, u16, String, u64)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (iqn, tag, initiator, m) = p?.0;
    change(&live, |d| {
        ops::delete_mapped_lun(d, &iqn, tag, &initiator, m)
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/discovery_auth", tag = "config",
    request_body = AuthDoc,
    responses((status = 200, description = "CHAP required of discovery sessions", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn set_discovery_auth(
    State(live): State<Shared>,
    b: Result<Json<AuthDoc>, JsonRejection>,
) -> ApiResult<Json<Changes>> {
    let b = b?.0;
    auth_paths(&b)?;
    change(&live, |d| ops::set_discovery_auth(d, Some(b))).await
}

#[utoipa::path(delete, path = "/api/v1/discovery_auth", tag = "config",
    responses((status = 200, description = "Discovery is open", body = Changes),
        (status = 400, description = "Invalid: refused as a file with the change would be", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn clear_discovery_auth(State(live): State<Shared>) -> ApiResult<Json<Changes>> {
    change(&live, |d| ops::set_discovery_auth(d, None)).await
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "status",
    responses((status = 200, description = "Every session: initiator, ISID, TSIH, target and group, connections with addresses, negotiated parameters, mapped LUNs, and its counters", body = Object)))]
async fn get_sessions(State(live): State<Shared>) -> Response {
    let stats = live.lock().await.server().stats();
    Json(serde_json::json!({ "sessions": stats.sessions })).into_response()
}

#[utoipa::path(get, path = "/api/v1/stats", tag = "status",
    responses((status = 200, description = "Counters per LU, per target port and per session (commands, bytes read and written, errors, latency histogram), logins and login failures by reason", body = Object)))]
async fn get_stats(State(live): State<Shared>) -> Response {
    let stats = live.lock().await.server().stats();
    Json(stats).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus text exposition (0.0.4)", body = String, content_type = "text/plain")))]
async fn metrics(State(live): State<Shared>) -> Response {
    let (server, alua) = {
        let l = live.lock().await;
        (l.server().clone(), l.alua_states())
    };
    let mut text = crate::metrics::render(&server.stats());
    text.push_str(&crate::metrics::render_alua(&alua));
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

#[utoipa::path(get, path = "/api/v1/vhost", tag = "vhost",
    responses((status = 200, description = "Every vhost-user-scsi controller", body = Vec<VhostDoc>)))]
async fn list_vhost(State(live): State<Shared>) -> Json<Vec<VhostDoc>> {
    Json(live.lock().await.doc().vhost.clone())
}

#[utoipa::path(post, path = "/api/v1/vhost", tag = "vhost",
    request_body = VhostDoc,
    responses((status = 201, description = "Created: the socket is served", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 409, description = "The name or socket is taken, or the socket cannot be served (another process serves it, it is not a socket); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_vhost(
    State(live): State<Shared>,
    b: Result<Json<VhostDoc>, JsonRejection>,
) -> ApiResult<Response> {
    let b = b?.0;
    absolute("socket", Some(&b.socket))?;
    change(&live, |d| ops::create_vhost(d, b))
        .await
        .map(created)
}

#[utoipa::path(get, path = "/api/v1/vhost/{name}", tag = "vhost",
    params(("name" = String, Path, description = "Controller name")),
    responses((status = 200, description = "The controller", body = VhostDoc),
        (status = 400, description = "Invalid (the name is not UTF-8)", body = ErrorBody),
        (status = 404, description = "No such controller", body = ErrorBody)))]
async fn get_vhost(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<VhostDoc>> {
    let name = p?.0;
    let l = live.lock().await;
    l.doc().vhost(&name).cloned().map(Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no vhost controller {name:?}"),
        )
    })
}

#[utoipa::path(delete, path = "/api/v1/vhost/{name}", tag = "vhost",
    params(("name" = String, Path, description = "Controller name")),
    responses((status = 200, description = "Deleted; the VM attached to it is disconnected", body = Changes),
        (status = 400, description = "Invalid (the name is not UTF-8)", body = ErrorBody),
        (status = 404, description = "No such controller", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_vhost(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let name = p?.0;
    change(&live, |d| ops::delete_vhost(d, &name)).await
}

#[utoipa::path(post, path = "/api/v1/vhost/{name}/luns", tag = "vhost",
    params(("name" = String, Path, description = "Controller name")),
    request_body = ops::NewLun,
    responses((status = 201, description = "Created; the attached guest is told (hotplug)", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such controller or backstore", body = ErrorBody),
        (status = 409, description = "The LUN is taken", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn create_vhost_lun(
    State(live): State<Shared>,
    p: Result<Path<String>, PathRejection>,
    b: Result<Json<ops::NewLun>, JsonRejection>,
) -> ApiResult<Response> {
    let name = p?.0;
    let b = b?.0;
    change(&live, |d| ops::create_vhost_lun(d, &name, b).map(|_| ()))
        .await
        .map(created)
}

#[utoipa::path(delete, path = "/api/v1/vhost/{name}/luns/{lun}", tag = "vhost",
    params(("name" = String, Path, description = "Controller name"), ("lun" = u64, Path, description = "LUN number")),
    responses((status = 200, description = "Deleted; the attached guest is told (hot unplug)", body = Changes),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 404, description = "No such LUN", body = ErrorBody),
        (status = 409, description = "Valid, but cannot be served (a medium cannot be opened, a portal cannot be bound); nothing changed", body = ErrorBody),
        (status = 503, description = "Made, but could not be saved to the --config file, so undone", body = ErrorBody)))]
async fn delete_vhost_lun(
    State(live): State<Shared>,
    p: Result<Path<(String, u64)>, PathRejection>,
) -> ApiResult<Json<Changes>> {
    let (name, lun) = p?.0;
    change(&live, |d| ops::delete_vhost_lun(d, &name, lun)).await
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rtgt control API",
        description = "Live configuration of the rtgt SCSI target. Every change is validated whole, applied live and saved to the --config file."
    ),
    paths(
        get_config,
        put_config,
        save_config,
        get_tree,
        get_status,
        list_backstores,
        create_backstore,
        get_backstore,
        patch_backstore,
        delete_backstore,
        list_targets,
        create_target,
        get_target,
        delete_target,
        create_tpg,
        get_tpg,
        patch_tpg,
        delete_tpg,
        set_tpg_auth,
        clear_tpg_auth,
        create_portal,
        delete_portal,
        create_lun,
        delete_lun,
        create_acl,
        get_acl,
        delete_acl,
        set_acl_auth,
        clear_acl_auth,
        create_mapped_lun,
        delete_mapped_lun,
        set_discovery_auth,
        clear_discovery_auth,
        list_vhost,
        create_vhost,
        get_vhost,
        delete_vhost,
        create_vhost_lun,
        delete_vhost_lun,
        get_sessions,
        get_stats,
        metrics,
    )
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such resource: see GET /openapi.json for the API".into(),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not an operation of {}: see GET /openapi.json for the API",
            uri.path()
        ),
    )
}

/// The control API.
pub fn router(live: Shared) -> Router {
    let tpg = "/api/v1/targets/{iqn}/tpgs/{tag}";
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/api/v1/config", get(get_config).put(put_config))
        .route("/api/v1/config/save", post(save_config))
        .route("/api/v1/tree", get(get_tree))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/sessions", get(get_sessions))
        .route("/api/v1/stats", get(get_stats))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/backstores",
            get(list_backstores).post(create_backstore),
        )
        .route(
            "/api/v1/backstores/{name}",
            get(get_backstore)
                .patch(patch_backstore)
                .delete(delete_backstore),
        )
        .route("/api/v1/targets", get(list_targets).post(create_target))
        .route(
            "/api/v1/targets/{iqn}",
            get(get_target).delete(delete_target),
        )
        .route("/api/v1/targets/{iqn}/tpgs", post(create_tpg))
        .route(tpg, get(get_tpg).patch(patch_tpg).delete(delete_tpg))
        .route(
            &format!("{tpg}/auth"),
            put(set_tpg_auth).delete(clear_tpg_auth),
        )
        .route(&format!("{tpg}/portals"), post(create_portal))
        .route(
            &format!("{tpg}/portals/{{address}}"),
            axum::routing::delete(delete_portal),
        )
        .route(&format!("{tpg}/luns"), post(create_lun))
        .route(
            &format!("{tpg}/luns/{{lun}}"),
            axum::routing::delete(delete_lun),
        )
        .route(&format!("{tpg}/acls"), post(create_acl))
        .route(
            &format!("{tpg}/acls/{{initiator}}"),
            get(get_acl).delete(delete_acl),
        )
        .route(
            &format!("{tpg}/acls/{{initiator}}/auth"),
            put(set_acl_auth).delete(clear_acl_auth),
        )
        .route(
            &format!("{tpg}/acls/{{initiator}}/mapped_luns"),
            post(create_mapped_lun),
        )
        .route(
            &format!("{tpg}/acls/{{initiator}}/mapped_luns/{{mapped_lun}}"),
            axum::routing::delete(delete_mapped_lun),
        )
        .route("/api/v1/vhost", get(list_vhost).post(create_vhost))
        .route("/api/v1/vhost/{name}", get(get_vhost).delete(delete_vhost))
        .route("/api/v1/vhost/{name}/luns", post(create_vhost_lun))
        .route(
            "/api/v1/vhost/{name}/luns/{lun}",
            axum::routing::delete(delete_vhost_lun),
        )
        .route(
            "/api/v1/discovery_auth",
            put(set_discovery_auth).delete(clear_discovery_auth),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(live)
}

/// Only `/metrics`, for `--metrics-listen`.
pub fn metrics_router(live: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramdisk(name: &str, size: u64) -> BackstoreDoc {
        BackstoreDoc {
            size: Some(config::SizeDoc(size)),
            ..BackstoreDoc::new(name, BackstoreKind::Ramdisk)
        }
    }

    #[test]
    fn a_ramdisk_bigger_than_memory_is_refused_unless_it_was_there() {
        let huge = physical_memory().saturating_add(1 << 20) & !511;
        let old = Doc::default();
        let mut new = Doc::default();
        new.backstore.push(ramdisk("small", 1 << 20));
        assert!(ramdisk_sizes(&old, &new).is_ok());
        new.backstore.push(ramdisk("huge", huge));
        let e = ramdisk_sizes(&old, &new).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains("more than this machine's memory"), "{}", e.1);
        // loaded from the file at start: other changes still go through
        assert!(ramdisk_sizes(&new, &new).is_ok());
    }

    #[test]
    fn files_are_named_by_absolute_paths() {
        let mut b = ramdisk("f", 1 << 20);
        b.kind = BackstoreKind::Fileio;
        b.path = Some("disk.img".into());
        assert_eq!(absolute_paths(&b).unwrap_err().0, StatusCode::BAD_REQUEST);
        b.path = Some("/var/lib/rtgt/disk.img".into());
        assert!(absolute_paths(&b).is_ok());
        let a = AuthDoc {
            userid: "u".into(),
            mutual_password_file: Some("secret".into()),
            ..AuthDoc::default()
        };
        assert!(auth_paths(&a)
            .unwrap_err()
            .1
            .contains("mutual_password_file"));
    }

    #[test]
    fn the_document_lists_every_route() {
        let doc = ApiDoc::openapi();
        for p in [
            "/api/v1/sessions",
            "/api/v1/stats",
            "/metrics",
            "/api/v1/backstores",
        ] {
            assert!(
                doc.paths.paths.contains_key(p),
                "{p} is not in /openapi.json"
            );
        }
        // every operation that changes something documents the errors a change can meet
        let json = serde_json::to_value(&doc).unwrap();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "get" || path == "/api/v1/config/save" {
                    continue;
                }
                for code in ["400", "409", "503"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} does not document {code}"
                    );
                }
            }
        }
    }
}
