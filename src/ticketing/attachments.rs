//! Ticket attachments: metadata in the database, bytes in an object store —
//! a folder under the data directory by default (`<data_dir>/attachments`),
//! or an S3-compatible bucket (`attachments.store = "s3"`), both through
//! the `object_store` crate. Objects are keyed by tenant, ticket and a
//! random id, never by the uploaded file name.
//!
//! `POST /api/v1/tickets/{id}/attachments?filename=…[&public=false]` takes
//! the raw bytes as the body (its `Content-Type` is stored); `GET
//! /api/v1/tickets/{id}/attachments` lists them; `GET
//! /api/v1/attachments/{id}` downloads one (as an attachment, never rendered
//! inline). Who sees what follows the ticket: another tenant's attachment,
//! or a customer's view of a ticket that is not theirs, is 404; internal
//! attachments (staff, `public=false`) are hidden from customers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::auth::Principal;
use super::db::{audit, db_error, now};
use super::directory::Items;
use super::CoreState;
use crate::error::{ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery};

/// Where attachment bytes live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentSettings {
    /// `local` (a folder) or `s3`.
    pub store: String,
    /// The local folder; default `<data_dir>/attachments`.
    pub dir: Option<std::path::PathBuf>,
    /// Largest attachment accepted, in bytes (413 beyond).
    pub max_bytes: usize,
    /// S3: the bucket; credentials and region come from the usual
    /// `AWS_*` variables.
    pub s3_bucket: Option<String>,
    /// S3-compatible servers (MinIO, Ceph, R2…): their URL.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Allow a plain-http endpoint (a local MinIO).
    pub s3_allow_http: bool,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            store: "local".into(),
            dir: None,
            max_bytes: 20 * 1024 * 1024,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
        }
    }
}

impl AttachmentSettings {
    pub fn validate(&self) -> Result<(), String> {
        match self.store.as_str() {
            "local" => {}
            "s3" if self
                .s3_bucket
                .as_deref()
                .is_some_and(|b| !b.trim().is_empty()) => {}
            "s3" => return Err("attachments.store = s3 needs attachments.s3_bucket".into()),
            other => {
                return Err(format!(
                    "attachments.store must be local or s3, not {other:?}"
                ))
            }
        }
        if self.max_bytes < 1024 {
            return Err("attachments.max_bytes must be at least 1024".into());
        }
        Ok(())
    }

    /// Opens the configured store.
    pub fn open(&self, data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
        self.validate().map_err(anyhow::Error::msg)?;
        if self.store == "s3" {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(self.s3_bucket.clone().unwrap_or_default())
                .with_allow_http(self.s3_allow_http);
            if let Some(e) = &self.s3_endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &self.s3_region {
                b = b.with_region(r);
            }
            return Ok(Arc::new(b.build()?));
        }
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("attachments"));
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&dir)?,
        ))
    }
}

#[derive(Debug, Serialize)]
pub struct Attachment {
    pub id: i64,
    pub ticket_id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub public: bool,
    pub uploaded_by: String,
    pub created_at: i64,
    /// Images: the metadata removed before the file was stored
    /// (`removed` tags, `gps`).
    pub privacy: Option<serde_json::Value>,
    /// Images: the AI service's check (kind, quality, OCR text, barcodes,
    /// personal data, perceptual hash, and what it linked under `links`),
    /// once the worker has run it. Staff only.
    pub analysis: Option<serde_json::Value>,
    /// The asset a barcode on the image named.
    pub asset_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub filename: String,
    /// Staff may attach internal files (`false`); a customer's are public.
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

fn check_filename(name: &str) -> Result<&str, ApiError> {
    let n = name.trim();
    let ok = !n.is_empty()
        && n.chars().count() <= 255
        && !n.chars().any(|c| c.is_control() || c == '/' || c == '\\')
        && n != "."
        && n != "..";
    if ok {
        Ok(n)
    } else {
        Err(ApiError::validation(
            "filename must be 1-255 characters, without '/', '\\' or control characters",
        ))
    }
}

/// `type/subtype` of the upload (parameters dropped), default
/// `application/octet-stream`.
fn content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::validation("Content-Type is not valid text"))?;
    let essence = v
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let ok = essence.len() <= 100
        && essence.split('/').count() == 2
        && essence.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        });
    if ok {
        Ok(essence)
    } else {
        Err(ApiError::validation("Content-Type must be type/subtype"))
    }
}

fn attachment(r: &sqlx::any::AnyRow) -> Result<Attachment, sqlx::Error> {
    Ok(Attachment {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        filename: r.try_get("filename")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        public: r.try_get::<i64, _>("public")? != 0,
        uploaded_by: r.try_get("uploaded_by")?,
        created_at: r.try_get("created_at")?,
        privacy: json_column(r, "privacy")?,
        analysis: json_column(r, "analysis")?,
        asset_id: r.try_get("asset_id")?,
    })
}

fn json_column(r: &sqlx::any::AnyRow, c: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let text: Option<String> = r.try_get(c)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

const COLUMNS: &str = "id, ticket_id, filename, content_type, size, sha256, public, uploaded_by, \
                       created_at, privacy, analysis, asset_id";

/// `POST /api/v1/tickets/{id}/attachments`.
pub async fn upload(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, ApiJson<Attachment>), ApiError> {
    let filename = check_filename(&q.filename)?.to_string();
    let content_type = content_type(&headers)?;
    if body.is_empty() {
        return Err(ApiError::validation("the attachment is empty"));
    }
    if !q.public && !p.is_staff() {
        return Err(ApiError::Forbidden(
            "customers attach public files only".into(),
        ));
    }
    super::tickets::visible(&state.db.pool, &p, id).await?;
    // Images lose their metadata (GPS above all) before they are stored;
    // the worker then has the AI service check them.
    let image = content_type.starts_with("image/");
    let (body, privacy) = if image {
        let report = crate::vision::exif_report(&body);
        let clean = crate::vision::strip_metadata(&body)
            .ok_or_else(|| ApiError::validation("the image file is damaged"))?;
        let privacy = serde_json::json!({ "removed": report.removed, "gps": report.gps });
        (Bytes::from(clean), Some(privacy.to_string()))
    } else {
        (body, None)
    };
    let sha256 = hex::encode(Sha256::digest(&body));
    let size = body.len() as i64;
    let key = format!("{}/{id}/{}", p.tenant_id, super::new_id());
    let path = ObjectPath::from(key.as_str());
    // Bytes first: a crash before the row leaves an unreferenced object,
    // never a row without its bytes.
    state
        .files
        .put_opts(&path, PutPayload::from(body), PutOptions::default())
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("store the attachment: {e}")))?;
    let at = now();
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let row = sqlx::query(&format!(
        "INSERT INTO attachments (tenant_id, ticket_id, filename, content_type, size, sha256, \
         storage_key, public, uploaded_by, created_at, privacy) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(id)
    .bind(&filename)
    .bind(&content_type)
    .bind(size)
    .bind(&sha256)
    .bind(&key)
    .bind(i64::from(q.public))
    .bind(&p.user_id)
    .bind(at)
    .bind(privacy)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    let created = attachment(&row).map_err(db_error)?;
    if image {
        let payload = serde_json::json!({ "attachment_id": created.id });
        let key = format!("attachment_check:{}", created.id);
        super::jobs::enqueue(
            &mut tx,
            &p.tenant_id,
            "attachment_check",
            &payload,
            &key,
            at,
        )
        .await
        .map_err(db_error)?;
    }
    let after = serde_json::json!({ "filename": filename, "size": size, "sha256": sha256 });
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "attachment.add",
        &format!("ticket:{id}/attachment:{}", created.id),
        None,
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    if image {
        state.jobs_signal.notify_one();
    }
    Ok((StatusCode::CREATED, ApiJson(created)))
}

/// `GET /api/v1/tickets/{id}/attachments`.
pub async fn list(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<Items<Attachment>>, ApiError> {
    super::tickets::visible(&state.db.pool, &p, id).await?;
    let only_public = if p.is_staff() { "" } else { " AND public = 1" };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM attachments WHERE tenant_id = $1 AND ticket_id = $2{only_public} \
         ORDER BY id"
    ))
    .bind(&p.tenant_id)
    .bind(id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let mut items: Vec<Attachment> = rows
        .iter()
        .map(attachment)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    if !p.is_staff() {
        // The check links to other tickets and reads the file's text: for
        // the agents.
        for a in &mut items {
            a.analysis = None;
        }
    }
    Ok(ApiJson(Items { items }))
}

/// `GET /api/v1/attachments/{id}`: the bytes.
pub async fn download(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, storage_key FROM attachments WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(&p.tenant_id)
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::NotFound(format!("no attachment {id}")))?;
    let a = attachment(&row).map_err(db_error)?;
    // The ticket's visibility decides (a customer: their own tickets).
    super::tickets::visible(&state.db.pool, &p, a.ticket_id)
        .await
        .map_err(|_| ApiError::NotFound(format!("no attachment {id}")))?;
    if !a.public && !p.is_staff() {
        return Err(ApiError::NotFound(format!("no attachment {id}")));
    }
    let key: String = row.try_get("storage_key").map_err(db_error)?;
    let bytes = state
        .files
        .get_opts(&ObjectPath::from(key.as_str()), GetOptions::default())
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("read the attachment: {e}")))?
        .bytes()
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("read the attachment: {e}")))?;
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&a.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // Always a download: an uploaded HTML or SVG file must not run here.
    let ascii: String = a
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-content-sha256",
        HeaderValue::from_str(&a.sha256).unwrap_or(HeaderValue::from_static("")),
    );
    Ok(r)
}

/// The stored bytes of an attachment of `tenant` (the worker's check).
pub async fn stored_bytes(
    db: &super::Db,
    files: &dyn ObjectStore,
    tenant: &str,
    id: i64,
) -> anyhow::Result<Option<Bytes>> {
    let row = sqlx::query("SELECT storage_key FROM attachments WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let key: String = row.try_get("storage_key")?;
    let got = files
        .get_opts(&ObjectPath::from(key.as_str()), GetOptions::default())
        .await?;
    Ok(Some(got.bytes().await?))
}

/// Stores the AI service's report on the attachment, with what it links
/// (under `links` in the stored report):
/// - `near_duplicate`: the closest earlier ticket's attachment within the
///   report's `near_duplicate_distance` (Hamming, of the 64-bit pHash); the
///   two tickets get a `near_duplicate_image` link;
/// - `asset`: the tenant's asset whose tag or serial a barcode spells; the
///   ticket and its work orders that have no asset yet get it.
///
/// Returns the attachment's ticket and the stored report (`None`: the
/// attachment is gone).
pub async fn save_analysis(
    db: &super::Db,
    tenant: &str,
    id: i64,
    report: &serde_json::Value,
) -> Result<Option<(i64, serde_json::Value)>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let Some(row) =
        sqlx::query("SELECT ticket_id FROM attachments WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
    else {
        return Ok(None);
    };
    let ticket: i64 = row.try_get("ticket_id")?;
    let at = now();
    let mut report = report.clone();
    let mut links = serde_json::Map::new();
    let hash = report["phash"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h, 16).ok());
    if let (Some(hash), Some(max)) = (hash, report["near_duplicate_distance"].as_u64()) {
        // Earlier tickets' images of the tenant, nearest first.
        let rows = sqlx::query(
            "SELECT id, ticket_id, phash FROM attachments \
             WHERE tenant_id = $1 AND phash IS NOT NULL AND ticket_id < $2",
        )
        .bind(tenant)
        .bind(ticket)
        .fetch_all(&mut **tx)
        .await?;
        let mut best: Option<(u32, i64, i64)> = None;
        for r in &rows {
            let other: String = r.try_get("phash")?;
            let Ok(other) = u64::from_str_radix(&other, 16) else {
                continue;
            };
            let d = crate::vision::hamming(hash, other);
            let cand = (
                d,
                r.try_get::<i64, _>("ticket_id")?,
                r.try_get::<i64, _>("id")?,
            );
            if u64::from(d) <= max && best.is_none_or(|b| cand < b) {
                best = Some(cand);
            }
        }
        if let Some((distance, earlier, attachment)) = best {
            let detail = serde_json::json!({
                "attachment_id": id, "linked_attachment_id": attachment, "distance": distance,
            });
            sqlx::query(
                "INSERT INTO ticket_links (tenant_id, ticket_id, linked_ticket_id, reason, detail, \
                 created_at) VALUES ($1, $2, $3, 'near_duplicate_image', $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(ticket)
            .bind(earlier)
            .bind(detail.to_string())
            .bind(at)
            .execute(&mut **tx)
            .await?;
            links.insert(
                "near_duplicate".into(),
                serde_json::json!({ "ticket_id": earlier, "attachment_id": attachment,
                    "distance": distance }),
            );
        }
    }
    let codes = report["barcodes"].as_array().cloned().unwrap_or_default();
    let mut asset_id = None;
    for code in codes.iter().filter_map(|c| c["text"].as_str()) {
        let code = code.trim();
        if code.is_empty() || code.len() > 200 {
            continue;
        }
        let found = sqlx::query(
            "SELECT id, tag FROM assets WHERE tenant_id = $1 AND (tag = $2 OR serial = $2) \
             ORDER BY id LIMIT 1",
        )
        .bind(tenant)
        .bind(code)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(a) = found {
            let asset: i64 = a.try_get("id")?;
            let tag: String = a.try_get("tag")?;
            // The ticket and its work orders, where they have no asset yet.
            let mut linked = [0u64; 2];
            for (n, sql) in [
                "UPDATE tickets SET asset_id = $1 WHERE tenant_id = $2 AND id = $3 \
                 AND asset_id IS NULL",
                "UPDATE work_orders SET asset_id = $1 WHERE tenant_id = $2 AND ticket_id = $3 \
                 AND asset_id IS NULL",
            ]
            .into_iter()
            .enumerate()
            {
                linked[n] = sqlx::query(sql)
                    .bind(asset)
                    .bind(tenant)
                    .bind(ticket)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
            }
            let (ticket_linked, orders) = (linked[0] == 1, linked[1]);
            links.insert(
                "asset".into(),
                serde_json::json!({ "asset_id": asset, "tag": tag, "code": code,
                    "ticket_linked": ticket_linked, "work_orders_linked": orders }),
            );
            asset_id = Some(asset);
            break;
        }
    }
    if !links.is_empty() {
        let after = serde_json::Value::Object(links.clone());
        audit(
            &mut **tx,
            tenant,
            "ai:attachment_check",
            "attachment.links",
            &format!("ticket:{ticket}/attachment:{id}"),
            None,
            Some(&after),
        )
        .await?;
    }
    report["links"] = serde_json::Value::Object(links);
    sqlx::query(
        "UPDATE attachments SET analysis = $1, phash = $2, asset_id = $3 \
         WHERE tenant_id = $4 AND id = $5",
    )
    .bind(report.to_string())
    .bind(hash.map(|h| format!("{h:016x}")))
    .bind(asset_id)
    .bind(tenant)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(Some((ticket, report)))
}

/// The text of a ticket's checked attachments, for its triage: each
/// attachment's OCR text with personal data redacted, when the check found
/// it usable. (attachment id, text) in upload order.
pub async fn texts_of(
    db: &super::Db,
    tenant: &str,
    ticket: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, analysis FROM attachments WHERE tenant_id = $1 AND ticket_id = $2 \
         AND analysis IS NOT NULL ORDER BY id",
    )
    .bind(tenant)
    .bind(ticket)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let analysis: String = r.try_get("analysis")?;
        let Ok(a) = serde_json::from_str::<serde_json::Value>(&analysis) else {
            continue;
        };
        if let Some(t) = usable_text(&a) {
            out.push((r.try_get("id")?, t));
        }
    }
    Ok(out)
}

/// A report's OCR text for triage: redacted of personal data, and only when
/// the check marked it usable.
pub fn usable_text(report: &serde_json::Value) -> Option<String> {
    let ocr = &report["ocr"];
    if ocr["usable"].as_bool() != Some(true) {
        return None;
    }
    let text = report["pii"]["redacted"]
        .as_str()
        .or_else(|| ocr["text"].as_str())?
        .trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_content_types_are_checked() {
        assert_eq!(
            check_filename(" screen shot.png ").unwrap(),
            "screen shot.png"
        );
        for bad in ["", "..", "a/b.png", "a\\b", "x\u{0}y", &"a".repeat(256)] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
        let mut h = HeaderMap::new();
        assert_eq!(content_type(&h).unwrap(), "application/octet-stream");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Image/PNG; charset=x"),
        );
        assert_eq!(content_type(&h).unwrap(), "image/png");
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("not a type"));
        assert!(content_type(&h).is_err());
        assert!(AttachmentSettings::default().validate().is_ok());
        let s3 = AttachmentSettings {
            store: "s3".into(),
            ..Default::default()
        };
        assert!(s3.validate().is_err(), "a bucket is needed");
        let ftp = AttachmentSettings {
            store: "ftp".into(),
            ..Default::default()
        };
        assert!(ftp.validate().is_err());
    }
}
