//! `GET /openapi.json`: the AI service's contract, written out by hand (a
//! test checks that every route the router serves is described here).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AiState;

pub fn router() -> Router<AiState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

pub fn document() -> Value {
    let errors = json!({
        "400": error_response("Malformed JSON"),
        "413": error_response("Body or input list too large"),
        "415": error_response("Content-Type is not application/json"),
        "422": error_response("Invalid request (empty input, wrong types, input too long without truncate)"),
        "429": error_response("Too many requests in flight"),
        "503": error_response("Model not loaded yet"),
    });
    let with = |ok: Value| {
        let mut r = errors.clone();
        r["200"] = ok;
        r
    };
    let with_404 = |ok: Value| {
        let mut r = with(ok);
        r["404"] = error_response("No model for this task and tenant");
        r
    };
    let tenant = json!({ "name": "X-Tenant-Id", "in": "header", "required": false,
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "default": "default" },
        "description": "The tenant when the request has no credential; with one, only for service keys" });
    let task = json!({ "name": "task", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" } });
    let inputs = json!({ "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 } ] });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "helpdesk-ai",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Text embeddings (TEI- and OpenAI-compatible), label heads (classify, sentiment, urgency; versions, training jobs, promotion, rollback) knowledge base and similar tickets, operational endpoints, and the ticketing core (/api/v1)."
        },
        "paths": {
            "/embed": { "post": {
                "summary": "Embed text (text-embeddings-inference's request and response shape)",
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/TeiRequest" } } } },
                "responses": with(json!({ "description": "One vector per input",
                    "content": { "application/json": { "schema": {
                        "type": "array", "items": { "type": "array", "items": { "type": "number" } } } } } }))
            }},
            "/v1/embeddings": { "post": {
                "summary": "Embed text (OpenAI's request and response shape)",
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/OpenAiRequest" } } } },
                "responses": with(json!({ "description": "Embeddings with token usage",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/OpenAiResponse" } } } }))
            }},
            "/health": { "get": { "summary": "Liveness", "responses": { "200": { "description": "The process is up" } } } },
            "/ready": { "get": { "summary": "Readiness: the model is loaded",
                "responses": { "200": { "description": "Ready" }, "503": error_response("Still loading or failed") } } },
            "/info": { "get": { "summary": "Model, dimensions, limits, device, version",
                "responses": { "200": { "description": "Service info", "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Info" } } } }, "503": error_response("Not ready") } } },
            "/metrics": { "get": { "summary": "Prometheus metrics",
                "responses": { "200": { "description": "Text exposition format", "content": { "text/plain": {} } } } } },
            "/openapi.json": { "get": { "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/v1/classify": { "post": {
                "summary": "Predict one or more tasks' labels; each text is encoded once for all tasks",
                "parameters": [tenant.clone()],
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/ClassifyRequest" } } } },
                "responses": with_404(json!({ "description": "Per input, task → prediction",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ClassifyResponse" } } } }))
            }},
            "/v1/sentiment": { "post": {
                "summary": "negative / neutral / positive with scores (the tenant's sentiment task, else the shipped head)",
                "parameters": [tenant.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["inputs"], "properties": { "inputs": inputs.clone() } } } } },
                "responses": with(json!({ "description": "One result per input",
                    "content": { "application/json": { "schema": { "type": "object", "properties": {
                        "version": { "type": "integer" },
                        "results": { "type": "array", "items": { "$ref": "#/components/schemas/Sentiment" } } } } } } }))
            }},
            "/v1/urgency": { "post": {
                "summary": "low / normal / high / critical from outage, deadline, VIP and repeat signals plus negative sentiment, with reasons",
                "parameters": [tenant.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["text"], "properties": {
                        "text": { "type": "string" }, "vip_requester": { "type": "boolean" },
                        "previous_contacts": { "type": "integer", "minimum": 0 } } } } } },
                "responses": with(json!({ "description": "Level, points, reasons and the sentiment used" }))
            }},
            "/v1/models": { "get": { "summary": "The tenant's tasks and their active versions",
                "parameters": [tenant.clone()],
                "responses": { "200": { "description": "Tasks" }, "422": error_response("Bad tenant id") } } },
            "/v1/models/{task}": { "get": { "summary": "Versions of a task with their model cards (labels, head kind, metrics, data hash, encoder, date)",
                "parameters": [tenant.clone(), task.clone()],
                "responses": { "200": { "description": "Versions and the active one" }, "404": error_response("No such task for this tenant") } } },
            "/v1/models/{task}/train": { "post": {
                "summary": "Train a new version as a job; it is promoted when its held-out macro-F1 is not worse than the active version's",
                "parameters": [tenant.clone(), task.clone()],
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/TrainRequest" } } } },
                "responses": { "202": { "description": "Job started: poll `status_url`" },
                    "201": { "description": "Zero-shot version made (with `descriptions`)" },
                    "413": error_response("Too many examples"), "422": error_response("Fewer than two labels, empty texts"),
                    "503": error_response("Model not loaded yet") } } },
            "/v1/models/{task}/promote": { "post": { "summary": "Make a version active (the service reloads it on the next request)",
                "parameters": [tenant.clone(), task.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["version"], "properties": { "version": { "type": "integer", "minimum": 0 } } } } } },
                "responses": { "200": { "description": "Versions after the change" }, "404": error_response("No such version") } } },
            "/v1/models/{task}/rollback": { "post": { "summary": "Make the previously active version active again",
                "parameters": [tenant.clone(), task.clone()],
                "responses": { "200": { "description": "Versions after the change" }, "409": error_response("Nothing to roll back to") } } },
            "/v1/kb/articles": { "post": {
                "summary": "Add or replace a KB article by id: cleaned, chunked by heading (~200 tokens, overlap), embedded and indexed; unchanged content is not re-embedded",
                "parameters": [tenant.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["id", "title", "body"], "properties": {
                        "id": { "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$" }, "title": { "type": "string" },
                        "body": { "type": "string" }, "format": { "enum": ["markdown", "html", "text"], "default": "markdown" },
                        "visibility": { "enum": ["public", "internal"], "default": "public" },
                        "tags": { "type": "array", "items": { "type": "string" } },
                        "language": { "type": "string", "default": "en" } } } } } },
                "responses": { "201": { "description": "Indexed (new)" }, "200": { "description": "Indexed again, or unchanged" },
                    "413": error_response("Body too long"), "422": error_response("Bad id, empty title or body") } } },
            "/v1/kb/articles/{id}": { "delete": { "summary": "Remove an article and its chunks",
                "parameters": [tenant.clone(), { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "204": { "description": "Removed" }, "404": error_response("No such article for this tenant") } } },
            "/v1/kb/search": { "get": { "summary": "Search the tenant's KB passages: dense (cosine), bm25 (words) or hybrid (reciprocal rank fusion of both)",
                "parameters": [tenant.clone(),
                    { "name": "q", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "k", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 10 } },
                    { "name": "mode", "in": "query", "schema": { "enum": ["dense", "bm25", "hybrid"], "default": "dense" } },
                    { "name": "visibility", "in": "query", "schema": { "enum": ["public", "internal"] } },
                    { "name": "tags", "in": "query", "schema": { "type": "string" }, "description": "comma-separated, any of" },
                    { "name": "language", "in": "query", "schema": { "type": "string" } }],
                "responses": { "200": { "description": "results: article_id, title, chunk, passage, snippet, score, visibility, tags" },
                    "422": error_response("Empty q, bad k or mode") } } },
            "/v1/kb/suggest": { "post": { "summary": "The best passage of each of the top k articles for a ticket (subject + body), above the tenant's suggest_threshold",
                "parameters": [tenant.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "subject": { "type": "string" }, "body": { "type": "string" },
                        "k": { "type": "integer", "minimum": 1, "maximum": 20, "default": 3 }, "public_only": { "type": "boolean" } } } } } },
                "responses": with(json!({ "description": "results, as search" })) } },
            "/v1/tickets/index": { "post": { "summary": "Index a ticket (upsert by id) for similar-ticket search: subject, body, status, resolution, created_at",
                "parameters": [tenant.clone()],
                "responses": { "200": { "description": "Indexed: {id, incident}; incident lists the tickets when this one completes a cluster of mutual near-neighbours (tenant settings; by default 3 tickets, every pair at cosine ≥ 0.75, within 30 minutes)" }, "422": error_response("Bad id, empty text") } } },
            "/v1/tickets/similar": { "post": { "summary": "The nearest earlier tickets (with their resolution when solved) and a duplicate flag (tenant settings; by default cosine ≥ 0.9 within 72 h)",
                "parameters": [tenant.clone()],
                "responses": with(json!({ "description": "results: id, subject, score, status, resolution, created_at, duplicate; duplicate_of" })) } },
            "/v1/triage": { "post": { "summary": "Triage a ticket {ticket_id, subject, body, created_at, callback, attachment_text, attachments, revision, pipeline, label_sets} on one encoder pass, running the steps of its triage pipeline (pipelines/triage.toml; default standard): the tenant's routing heads (category, team, priority) and label sets, sentiment, urgency, KB suggestions, similar tickets, duplicate and incident; indexes the ticket. callback (the worker's service key only) posts the result to the core first",
                "parameters": [tenant.clone()],
                "responses": with(json!({ "description": "{ticket_id, result, callback}" })) } },
            "/v1/attachments/analyze": { "post": { "summary": "Check an image (raw bytes; PNG, JPEG, WebP, GIF, BMP, TIFF; ≤ 20 MiB, ≤ 50 megapixels): format and size, EXIF tags found (GPS flagged; the stored copy keeps none), quality (blur variance, exposure, resolution, with thresholds), 64-bit perceptual hash, image kind (EfficientNet-Lite0: screenshot, document, hardware with its type, photo), OCR text (tesseract), barcodes and QR codes, personal data in the text with a redacted copy, each step's time (raw bytes, or multipart/form-data with one file)",
                "parameters": [tenant.clone()],
                "responses": with(json!({ "description": "{format, width, height, bytes, exif {removed, gps}, quality, phash, timings_ms}" })) } },
            "/v1/settings": {
                "get": { "summary": "The tenant's thresholds (defaults until set)", "parameters": [tenant.clone()],
                    "responses": { "200": { "description": "The settings", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TenantSettings" } } } } } },
                "put": { "summary": "Replace the tenant's thresholds (fields left out take their defaults); they apply from the next request",
                    "parameters": [tenant.clone()],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TenantSettings" } } } },
                    "responses": with(json!({ "description": "The stored settings" })) } },
            "/v1/jobs/{id}": { "get": { "summary": "A training job: status, phase and progress, result (version, card, report) or error",
                "parameters": [tenant.clone(), { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }],
                "responses": { "200": { "description": "The job" }, "404": error_response("No such job for this tenant") } } }
        },
        "components": { "schemas": {
            "TenantSettings": { "type": "object", "properties": {
                "suggest_threshold": { "type": "number", "default": 0.35, "description": "KB suggestions below this cosine are left out" },
                "duplicate_threshold": { "type": "number", "default": 0.9 },
                "duplicate_window_hours": { "type": "integer", "default": 72, "minimum": 1, "maximum": 8760 },
                "incident_min_tickets": { "type": "integer", "default": 3, "minimum": 2, "maximum": 50 },
                "incident_window_minutes": { "type": "integer", "default": 30, "minimum": 1, "maximum": 1440 },
                "incident_similarity": { "type": "number", "default": 0.75, "description": "Every pair of an incident's tickets at or above this cosine" } } },
            "Error": { "type": "object", "required": ["error", "code"], "properties": {
                "error": { "type": "string" }, "code": { "type": "string" }, "error_type": { "type": "string" } } },
            "TeiRequest": { "type": "object", "required": ["inputs"], "properties": {
                "inputs": { "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 } ] },
                "normalize": { "type": "boolean", "default": true },
                "truncate": { "type": "boolean", "default": false,
                    "description": "Cut inputs longer than the model's limit instead of answering 422" },
                "truncation_direction": { "type": "string", "enum": ["Right"] },
                "dimensions": { "type": "integer" } } },
            "OpenAiRequest": { "type": "object", "required": ["input"], "properties": {
                "input": { "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 } ] },
                "model": { "type": "string" },
                "encoding_format": { "type": "string", "enum": ["float", "base64"], "default": "float" },
                "dimensions": { "type": "integer" },
                "user": { "type": "string" } } },
            "OpenAiResponse": { "type": "object", "properties": {
                "object": { "const": "list" },
                "model": { "type": "string" },
                "data": { "type": "array", "items": { "type": "object", "properties": {
                    "object": { "const": "embedding" }, "index": { "type": "integer" },
                    "embedding": { "oneOf": [ { "type": "array", "items": { "type": "number" } }, { "type": "string" } ] } } } },
                "usage": { "type": "object", "properties": {
                    "prompt_tokens": { "type": "integer" }, "total_tokens": { "type": "integer" } } } } },
            "ClassifyRequest": { "type": "object", "required": ["inputs"], "properties": {
                "inputs": inputs,
                "task": { "type": "string" },
                "tasks": { "type": "array", "items": { "type": "string" } } } },
            "Prediction": { "type": "object", "properties": {
                "version": { "type": "integer" },
                "label": { "type": ["string", "null"], "description": "null: abstain (below the threshold), route to a human" },
                "top": { "type": "string" }, "confidence": { "type": "number" },
                "probabilities": { "type": "array", "items": { "type": "object", "properties": {
                    "label": { "type": "string" }, "probability": { "type": "number" } } } },
                "evidence": { "type": "array", "items": { "type": "object", "properties": {
                    "text": { "type": "string" }, "label": { "type": "string" }, "similarity": { "type": "number" } } } } } },
            "ClassifyResponse": { "type": "object", "properties": { "results": { "type": "array", "items": {
                "type": "object", "additionalProperties": { "$ref": "#/components/schemas/Prediction" } } } } },
            "Sentiment": { "type": "object", "properties": {
                "label": { "enum": ["negative", "neutral", "positive"] }, "confidence": { "type": "number" },
                "scores": { "type": "array", "items": { "type": "object" } } } },
            "TrainRequest": { "type": "object", "properties": {
                "descriptions": { "type": "object", "additionalProperties": { "type": "string" },
                    "description": "label → description: a zero-shot version, made within the request (201)" },
                "examples": { "type": "array", "items": { "type": "object", "required": ["text", "label"], "properties": {
                    "text": { "type": "string" }, "label": { "type": "string" } } } },
                "heldout": { "type": "array", "items": { "type": "object" } },
                "kind": { "enum": ["knn", "softmax", "mlp"],
                    "description": "mlp: one ReLU hidden layer before the softmax layer, for many examples of classes a linear head cannot split" },
                "hidden_units": { "type": "integer", "minimum": 1, "maximum": 4096, "default": 256,
                    "description": "hidden units of an mlp head (only with kind mlp)" },
                "unlabelled": { "type": "array", "items": { "type": "string" },
                    "description": "texts without labels (e.g. past tickets): labels are propagated to them over a nearest-neighbour graph and they train a softmax or mlp head beside the examples (the card's training.unlabelled says how many were used)" },
                "unlabelled_weight": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5,
                    "description": "loss weight of a propagated label (a human label weighs 1)" },
                "limit_per_class": { "type": "integer" }, "seed": { "type": "integer" },
                "target_precision": { "type": "number", "default": 0.95 },
                "neutral_label": { "type": "string" },
                "layer_features": { "type": "boolean", "default": false,
                    "description": "the head reads every encoder layer's mean token state (same one pass), not the top layer's alone" },
                "promote": { "enum": ["gate", "always", "never"], "default": "gate" } } },
            "Info": { "type": "object", "properties": {
                "model": { "type": "string" }, "dims": { "type": "integer" },
                "max_input_tokens": { "type": "integer" }, "max_inputs": { "type": "integer" },
                "max_batch_tokens": { "type": "integer" }, "device": { "type": "string" },
                "threads": { "type": "integer" }, "version": { "type": "string" },
                "uptime_seconds": { "type": "number" } } }
        } }
    });
    let (paths, security) = ticketing();
    if let (Some(all), Value::Object(more)) = (doc["paths"].as_object_mut(), paths) {
        all.extend(more);
    }
    doc["components"]["securitySchemes"] = security;
    doc
}

/// The ticketing core's routes (`/api/v1`).
fn ticketing() -> (Value, Value) {
    let auth = json!({
        "401": error_response("No, unknown, revoked or expired credential"),
        "403": error_response("The role may not do this"),
        "422": error_response("Invalid request"),
    });
    let with = |code: &str, ok: &str, extra: &[(&str, &str)]| {
        let mut r = auth.clone();
        r[code] = json!({ "description": ok });
        for (c, d) in extra {
            r[*c] = error_response(d);
        }
        r
    };
    let bearer = json!([{ "bearer": [] }]);
    let id =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
    let paths = json!({
        "/api/v1/auth/login": { "post": { "summary": "A login token (JWT, HS256) for {tenant (name or id), email, password}",
            "security": [], "responses": with("200", "{token, token_type, expires_in}", &[]) } },
        "/api/v1/me": { "get": { "summary": "The caller", "security": bearer, "responses": with("200", "The user", &[]) } },
        "/api/v1/users": {
            "get": { "summary": "The tenant's users (staff)", "security": bearer, "responses": with("200", "{items}", &[]) },
            "post": { "summary": "Add a user {email, name, role, password} (admins)", "security": bearer,
                "responses": with("201", "The user", &[("409", "The e-mail exists in this tenant")]) } },
        "/api/v1/teams": {
            "get": { "summary": "The tenant's teams (staff)", "security": bearer, "responses": with("200", "{items}", &[]) },
            "post": { "summary": "Add a team {name} (admins)", "security": bearer,
                "responses": with("201", "The team", &[("409", "The name exists")]) } },
        "/api/v1/api-keys": { "post": { "summary": "A new API key acting as the caller {name, scopes: *, ai-callback, read} (admins; shown once). Service keys (acting for every tenant) come from `helpdesk key create` only",
            "security": bearer, "responses": with("201", "{id, name, prefix, scopes, api_key}", &[]) } },
        "/api/v1/tickets": {
            "get": { "summary": "Tickets newest first; filters status, priority, team_id, assignee_id, requester_id, triage (pending, applied, abstained = the triage queue, failed); limit ≤ 100, before = next_before (customers: their own)",
                "security": bearer, "responses": with("200", "{items, next_before}", &[]) },
            "post": { "summary": "Open a ticket {subject, body, priority, channel, tags; staff: category, team_id, assignee_id, requester_id}; its triage job is queued in the same transaction",
                "security": bearer, "responses": with("201", "The ticket", &[]) } },
        "/api/v1/tickets/{id}": {
            "get": { "summary": "A ticket; for staff with its `triage`: status (pending, applied, abstained, failed), attempts, labels (task → label, top, confidence, threshold, version, alternatives, evidence), sentiment, urgency, suggestions (KB passages), similar (earlier tickets), duplicate_of, incident, applied, skipped", "security": bearer, "parameters": id.clone(),
                "responses": with("200", "The ticket", &[("404", "No such ticket for this caller")]) },
            "patch": { "summary": "Change status, priority, category, team_id, assignee_id, tags (staff; null clears); routing changes become labels",
                "security": bearer, "parameters": id.clone(),
                "responses": with("200", "The ticket", &[("404", "No such ticket for this caller")]) } },
        "/api/v1/tickets/{id}/comments": {
            "get": { "summary": "Comments, oldest first (customers: public ones)", "security": bearer, "parameters": id.clone(),
                "responses": with("200", "{items}", &[("404", "No such ticket for this caller")]) },
            "post": { "summary": "Add a comment {body, public} (customers: public only)", "security": bearer, "parameters": id.clone(),
                "responses": with("201", "The comment", &[("404", "No such ticket for this caller")]) } },
        "/api/v1/tickets/{id}/triage": { "post": { "summary": "The AI service's callback: a triage result {labels, sentiment, urgency, suggestions, similar, duplicate_of, incident}. Applies category/team/priority when the confidence clears the tenant's route_threshold (else the head's own threshold), stores the prediction, adds an internal note with the KB suggestions; once per ticket (a repeat answers replayed: true). Keys with scope ai-callback (own tenant) or service (X-Tenant-Id)",
            "security": bearer, "parameters": id.clone(),
            "responses": with("200", "{ticket_id, status: applied|abstained, applied, skipped, note_id, replayed}", &[("404", "No such ticket in the tenant")]) } },
        "/api/v1/audit": { "get": { "summary": "The tenant's audit log, newest first {items: [{id, actor, action, object, before, after, at}], next_before} (?actor=&action=&object=&limit=1-200&before=) (admins)",
            "security": bearer, "responses": with("200", "A page of entries", &[("403", "Not an admin"), ("422", "Bad filter or limit")]) } },
        "/api/v1/labels": { "get": { "summary": "Agents' corrections as training labels, newest first {items: [{id, ticket_id, task, label, previous, actor, at, text}], next_before} (?task=category|team|priority&limit&before); ?task=…&format=csv: text,label rows, each ticket's latest correction once (what `helpdesk train --data` reads) (staff)",
            "security": bearer, "responses": with("200", "A page of labels, or CSV", &[("403", "Not staff"), ("422", "Bad task, format or limit")]) } },
        "/api/v1/tenant/settings": {
            "get": { "summary": "The tenant's triage settings {route_threshold (null: each head's own), thresholds {task: t}, auto_route_disabled, label_sets [task] (predicted at triage; confident answers become task:label tags), pipeline (a name of pipelines/triage.toml; null: standard)} (staff)", "security": bearer,
                "responses": with("200", "The settings", &[]) },
            "put": { "summary": "Replace the triage settings (admins)", "security": bearer,
                "responses": with("200", "The stored settings", &[("422", "A threshold outside 0-1, an unknown pipeline, a bad label set")]) } },
        "/api/v1/events": { "get": { "summary": "WebSocket of live events (JSON text messages {kind, tenant_id, ticket_id, requester_id, public, data, at}; kinds ticket.created, ticket.updated, ticket.triaged, comment.added, incident.detected (staff only: the ticket completes a cluster of near-identical recent tickets, data.tickets)). Staff: every event of the tenant; customers: their tickets' public events",
            "security": bearer, "responses": with("101", "Switching to WebSocket", &[("400", "Not a WebSocket upgrade")]) } },
        "/api/v1/analytics/volume": { "get": { "summary": "Tickets created per bucket {since, until (Unix s; default the last 30 days, ≤ 366), interval day|week, by category|team|channel|priority|status} (staff)",
            "security": bearer, "responses": with("200", "{since, until, interval_s, points: [{bucket, key, count}]}", &[]) } },
        "/api/v1/analytics/sentiment": { "get": { "summary": "Triaged tickets per bucket and sentiment (same window parameters) (staff)",
            "security": bearer, "responses": with("200", "{since, until, interval_s, points}", &[]) } },
        "/api/v1/analytics/sla": { "get": { "summary": "Open tickets past their SLA, and due within 24 h, by priority; tickets solved in the window (?since=&until=, default 30 days) on time and late, by priority, and the breach rate (staff)",
            "security": bearer, "responses": with("200", "{at, breached_open, due_within_24h, since, until, solved: {priority: {on_time, late}}, breach_rate}", &[("422", "Bad window")]) } },
        "/api/v1/analytics/triage": { "get": { "summary": "Triage coverage (applied vs abstained) and accuracy per task (predicted top label vs the ticket's final one, all and applied only) (staff)",
            "security": bearer, "responses": with("200", "{since, until, tickets, coverage, accuracy}", &[]) } },
        "/api/v1/tickets/{id}/attachments": {
            "get": { "summary": "The ticket's attachments (customers: public ones)", "security": bearer, "parameters": id.clone(),
                "responses": with("200", "{items: [{id, filename, content_type, size, sha256, public, uploaded_by, created_at}]}", &[("404", "No such ticket for this caller")]) },
            "post": { "summary": "Attach a file: the raw bytes as the body, its Content-Type, ?filename=…&public=false (staff only for internal); ≤ attachments.max_bytes (20 MiB)",
                "security": bearer, "parameters": id.clone(),
                "responses": with("201", "The attachment", &[("404", "No such ticket for this caller"), ("413", "Too large")]) } },
        "/api/v1/attachments/{id}": { "get": { "summary": "Download an attachment (Content-Disposition: attachment)", "security": bearer, "parameters": id.clone(),
            "responses": with("200", "The bytes", &[("404", "No such attachment for this caller")]) } },
        "/api/v1/kb/articles": {
            "get": { "summary": "The tenant's KB articles with their index_status (customers: public ones)", "security": bearer, "responses": with("200", "{items}", &[]) },
            "post": { "summary": "Create or replace an article {id, title, body, format, visibility, tags, language} (staff); the AI service indexes it through the job queue (index_status pending → indexed)", "security": bearer,
                "responses": with("201", "The article (200 when replaced)", &[]) } },
        "/api/v1/kb/articles/{id}": {
            "get": { "summary": "An article (customers: public ones)", "security": bearer,
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with("200", "The article", &[("404", "No such article for this caller")]) },
            "delete": { "summary": "Delete an article; the AI service drops it from its index (staff)", "security": bearer,
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with("204", "Deleted", &[("404", "No such article")]) } },
        "/api/v1/assets": {
            "get": { "summary": "The tenant's assets; filters kind, owner_id, tag (staff)", "security": bearer, "responses": with("200", "{items}", &[]) },
            "post": { "summary": "Add an asset {tag (unique in the tenant), serial, kind, owner_id, location} (staff)", "security": bearer,
                "responses": with("201", "The asset", &[("409", "The tag exists")]) } },
        "/api/v1/assets/{id}": {
            "get": { "summary": "An asset (staff)", "security": bearer, "parameters": id.clone(), "responses": with("200", "The asset", &[("404", "No such asset")]) },
            "patch": { "summary": "Change tag, serial, kind, owner_id, location (null clears) (staff)", "security": bearer, "parameters": id.clone(),
                "responses": with("200", "The asset", &[("404", "No such asset")]) } },
        "/api/v1/work-orders": {
            "get": { "summary": "Work orders, soonest scheduled first; filters ticket_id, asset_id, status (staff)", "security": bearer, "responses": with("200", "{items}", &[]) },
            "post": { "summary": "A work order {ticket_id, asset_id, scheduled_at, assignee_id, notes}: scheduled when it has a time, else open (staff)", "security": bearer,
                "responses": with("201", "The work order", &[]) } },
        "/api/v1/work-orders/{id}": {
            "get": { "summary": "A work order (staff)", "security": bearer, "parameters": id.clone(), "responses": with("200", "The work order", &[("404", "No such work order")]) },
            "patch": { "summary": "Change status (open, scheduled, in_progress, done, cancelled), scheduled_at, asset_id, assignee_id, notes (staff)", "security": bearer, "parameters": id.clone(),
                "responses": with("200", "The work order", &[("404", "No such work order")]) } },
        "/api/v1/webhooks": {
            "get": { "summary": "The tenant's webhooks (admins; secrets are not shown again)", "security": bearer,
                "responses": with("200", "{items}", &[]) },
            "post": { "summary": "Register {url, events} (admins). Deliveries: POST JSON event, X-Helpdesk-Signature: sha256=HMAC(secret, timestamp + '.' + body), X-Helpdesk-Timestamp, X-Helpdesk-Delivery (same on retries); retried with backoff until 2xx",
                "security": bearer, "responses": with("201", "{id, url, events, created_at, secret (shown once)}", &[]) } },
        "/api/v1/webhooks/{id}": { "delete": { "summary": "Remove a webhook (queued deliveries are dropped) (admins)", "security": bearer, "parameters": id,
                "responses": with("204", "Removed", &[("404", "No such webhook in the tenant")]) } }
    });
    let security = json!({ "bearer": { "type": "http", "scheme": "bearer",
        "description": "An API key (hd_…) or a login token from /api/v1/auth/login" } });
    (paths, security)
}
