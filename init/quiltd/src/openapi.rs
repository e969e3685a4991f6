//! The API's OpenAPI 3.1 document, generated from the code: the routes
//! come from the handlers' `#[utoipa::path]` as crate::api::routes
//! registers them (a route is documented exactly when it is served), the
//! bodies from the reply types in crate::replies that the handlers
//! serialize. Served unauthenticated at [`PATH`] and printed by
//! `quiltd openapi`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// The document's fixed parts; the paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "quiltd",
        description = "The signed HTTPS API of a Quilt board (docs/gateway.md). Every request but the probes and this document is signed with HTTP Message Signatures (RFC 9421, ed25519) covering @method, @path, @query, content-digest (RFC 9530 sha-256), created and a nonce, by a key in the board's authorized-clients file; the board's TLS key is pinned by its fingerprint. Errors are `{\"error\": code, \"message\": text}`."
    ),
    paths(mcp),
    modifiers(&Schemes),
    security(("signature" = [])),
    tags(
        (name = "probes", description = "Liveness and readiness, unauthenticated"),
        (name = "tools", description = "The installed bundles' tools, and running them"),
        (name = "bundles", description = "Installed bundles, and installing one"),
        (name = "services", description = "Supervised services, their output, and quilt-init's events"),
        (name = "firmware", description = "A/B firmware slots"),
        (name = "mcp", description = "The board as an MCP server"),
        (name = "metrics", description = "Prometheus"),
    )
)]
pub struct Doc;

/// The security schemes the document names.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, doc: &mut Document) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Signature",
                "RFC 9421 `Signature` and `Signature-Input` (label `sig`, alg `ed25519`, keyid the client key's fingerprint), with `Content-Digest` on every request; made by `quilt call` or any RFC 9421 library",
            ))),
        );
        c.add_security_scheme(
            "mcp_bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from POST /v1/tokens (`quilt token`), on /mcp only",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "scrape_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("quiltd's --metrics-token-file, on /metrics only"))
                    .build(),
            ),
        );
    }
}

/// MCP over Streamable HTTP (revision 2025-11-25, stateless, JSON
/// replies): JSON-RPC `initialize`, `tools/list`, `tools/call` (agent;
/// operator tools for operators). Served by rmcp, not by a handler here.
#[utoipa::path(post, path = "/mcp", tag = "mcp",
    security(("signature" = []), ("mcp_bearer" = [])),
    request_body(content = serde_json::Value, description = "A JSON-RPC message"),
    responses((status = 200, description = "The JSON-RPC reply", body = serde_json::Value),
        (status = 202, description = "A notification was accepted"),
        (status = "4XX", body = crate::replies::ErrorReply)))]
#[allow(dead_code)] // Documentation only: the route is rmcp's service.
fn mcp() {}

/// The document as served: the router's, with its version.
pub fn finish(mut doc: Document) -> Document {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The whole document, for `quiltd openapi`.
pub fn document() -> Document {
    let (_, doc) = crate::api::routes().split_for_parts();
    finish(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::route_role;
    use axum::http::Method;

    #[test]
    fn every_served_route_is_documented_and_held_to_the_route_table() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for want in [
            "/healthz",
            "/readyz",
            "/v1/bundles",
            "/v1/tools",
            "/v1/tokens",
            "/v1/tools/{bundle}/run",
            "/v1/services",
            "/v1/services/{name}/{action}",
            "/v1/services/{name}/logs",
            "/v1/events",
            "/v1/slots",
            "/metrics",
            "/mcp",
        ] {
            assert!(paths.contains_key(want), "{want} missing");
        }
        // Each documented operation is authenticated unless the route
        // table says it is open, and says which.
        for (path, ops) in paths {
            for (method, op) in ops.as_object().unwrap() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let concrete = path
                    .replace("{bundle}", "b")
                    .replace("{name}", "n")
                    .replace("{action}", "start");
                let open = route_role(&m, &concrete).is_none();
                let says_open = op["security"] == serde_json::json!([{}]);
                assert_eq!(open, says_open, "{method} {path}");
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["schemas"]["Run"].is_object(), "{doc}");
        assert!(doc["components"]["securitySchemes"]["signature"].is_object());
    }
}
