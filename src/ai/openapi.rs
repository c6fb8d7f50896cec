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
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "helpdesk-ai inference service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Text embeddings (TEI- and OpenAI-compatible) and operational endpoints."
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
                "responses": { "200": { "description": "OpenAPI 3.1" } } } }
        },
        "components": { "schemas": {
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
            "Info": { "type": "object", "properties": {
                "model": { "type": "string" }, "dims": { "type": "integer" },
                "max_input_tokens": { "type": "integer" }, "max_inputs": { "type": "integer" },
                "max_batch_tokens": { "type": "integer" }, "device": { "type": "string" },
                "threads": { "type": "integer" }, "version": { "type": "string" },
                "uptime_seconds": { "type": "number" } } }
        } }
    })
}
